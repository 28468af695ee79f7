package kube

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Labels and names of what the plugin creates.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "kubectl-podtrace"
	SessionLabel   = "podtrace.dev/session"
	NameLabel      = "app.kubernetes.io/name"
	AgentName      = "podtrace-agent"
	// DefaultAgentNamespace is where node agents run (deploy/agent-namespace.yaml).
	DefaultAgentNamespace = "podtrace-system"
	// AgentCommand is the agent's path in its image.
	AgentCommand = "/podtrace-agent"
	// ContainerPrefix starts the name of every ephemeral container the plugin adds.
	ContainerPrefix = "podtrace-"
	// WarmLabel holds a lingering node agent's warm key (launch.Spec.Key):
	// a rerun finds the node agents that serve it by this label.
	WarmLabel = "podtrace.dev/warm"
)

// ArgValue is the value of an agent argument ("--linger" → "2m0s"), or "".
func ArgValue(args []string, name string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			return args[i+1]
		}
	}
	return ""
}

// lingers tells whether the agent of these arguments serves runs in
// sequence (--linger): its stdin must outlive each plugin's attach.
func lingers(args []string) bool {
	d, err := time.ParseDuration(ArgValue(args, "--linger"))
	return err == nil && d > 0
}

// NewSessionID returns a short random id that names everything one run
// creates.
func NewSessionID() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)[:5]
}

// AgentParams is what every agent container of a run shares.
type AgentParams struct {
	Session     string
	Image       string
	PullPolicy  corev1.PullPolicy
	PullSecrets []string
	// Capabilities says which capabilities the container adds: "capture"
	// (NET_RAW, NET_ADMIN: what capture needs) or "default" (none added:
	// the runtime's default set, which under containerd includes NET_RAW;
	// for namespaces where PodSecurity baseline forbids adding any).
	Capabilities string
	// KernelDrops: node agents load the kernel drop reasons program
	// (--kernel-drops), so their container adds BPF and PERFMON too.
	KernelDrops bool
	// Unprivileged builds the pod agent (ephemeral container) without
	// privilege, as PodSecurity restricted (and so baseline) admits it:
	// UnprivilegedUID, runAsNonRoot, every capability dropped. Node agents
	// are not affected: they run in the agent namespace and capture.
	Unprivileged bool
	Deadline     time.Duration
	Namespace    string // agent namespace for node pods
	// NodeTaints are the taints of each node by name: a node agent
	// tolerates those of its node and no others.
	NodeTaints map[string][]corev1.Taint
}

// ContainerName is the ephemeral container's name for a session.
func ContainerName(session string) string { return ContainerPrefix + session }

// NodePodName names a session's node agent pod on one node.
func NodePodName(session, node string) string {
	h := fnv.New32a()
	h.Write([]byte(node))
	n := strings.ToLower(node)
	if len(n) > 30 {
		n = n[:30]
	}
	n = strings.Trim(n, "-.")
	return fmt.Sprintf("%s%s-%s-%04x", ContainerPrefix, session, n, h.Sum32()&0xffff)
}

// securityContext is the agent container's: root in the container (AF_PACKET
// sockets are checked against CAP_NET_RAW of the user namespace, and a pod
// that says runAsNonRoot must not stop the agent from starting), every
// capability dropped but what capture needs, no privilege escalation, the
// runtime's default seccomp profile, and a read-only root filesystem (the
// agent writes nothing but its stdout and stderr). The admission policies
// in deploy/admission-policy.yaml admit exactly this.
func (p AgentParams) securityContext() *corev1.SecurityContext {
	return p.securityContextFor(false)
}

// UnprivilegedUID is the user and group the unprivileged pod agent runs
// as (wire.UnprivilegedUID: "nobody").
const UnprivilegedUID = wire.UnprivilegedUID

// securityContextFor is the agent container's security context; an
// unprivileged one (the pod agent of mode unprivileged) meets PodSecurity
// restricted: a non-root numeric uid and gid, runAsNonRoot, every
// capability dropped and none added, no privilege escalation, seccomp
// RuntimeDefault, and the read-only root filesystem. It sends TCP and UDP
// probes from ports above 1023 and ICMP through a ping socket, none of
// which needs a capability.
func (p AgentParams) securityContextFor(unprivileged bool) *corev1.SecurityContext {
	if unprivileged {
		return &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](UnprivilegedUID),
			RunAsGroup:               ptr.To[int64](UnprivilegedUID),
			RunAsNonRoot:             ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
	}
	sc := &corev1.SecurityContext{
		RunAsUser:                ptr.To[int64](0),
		RunAsNonRoot:             ptr.To(false),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if p.Capabilities == "default" {
		return sc
	}
	sc.Capabilities = &corev1.Capabilities{
		Drop: []corev1.Capability{"ALL"},
		// NET_RAW: AF_PACKET capture and the ICMP probe's raw socket.
		// NET_ADMIN: holding the bridge promiscuous for the run
		// (PACKET_MR_PROMISC), reverted by the kernel on exit; on node
		// agents, conntrack events and netfilter tracing of the probe
		// (a table owned by the agent's socket, removed by the kernel
		// when it closes).
		Add: []corev1.Capability{"NET_RAW", "NET_ADMIN"},
	}
	return sc
}

// nodeSecurityContext is a node agent's: the agent's, and with
// KernelDrops the two capabilities an eBPF tracing program needs on
// Linux 5.8 and later, instead of CAP_SYS_ADMIN:
//
//   - BPF: create the program's maps (ring buffer, counters) and load it;
//   - PERFMON: load a tracing program (raw tracepoint skb:kfree_skb) that
//     reads kernel memory (bpf_probe_read_kernel) and names kernel
//     functions (bpf_snprintf %ps).
//
// Attaching the raw tracepoint needs nothing more, and the runtime's
// default seccomp profile admits the bpf system call to a holder of
// CAP_BPF.
func (p AgentParams) nodeSecurityContext() *corev1.SecurityContext {
	sc := p.securityContext()
	if p.KernelDrops && sc.Capabilities != nil {
		sc.Capabilities.Add = append(sc.Capabilities.Add, "BPF", "PERFMON")
	}
	return sc
}

// NodeAgentResources are the node agent container's requests and limits,
// sized from measurements of a node agent under a UDP flood. Off-cluster
// (bench/node-agent-resources.sh, three capture points, 2 cores): CPU at
// most 0.26 of a core, peak RssAnon 16 MiB, peak VmRSS 37 MiB (which counts
// the capture rings the kernel maps in; they are not charged to the pod's
// memory cgroup). On a real cluster (test/e2e/measure-node-agent.sh): the
// pod's memory cgroup peaked at 13 MiB, CPU 5-7% of a core, in a passive
// trace across a 50,000 packets/s flood. The limits leave room for nodes
// with many more interfaces; the CPU limit is high because a throttled
// agent drops frames.
var NodeAgentResources = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("50m"),
		corev1.ResourceMemory: resource.MustParse("32Mi"),
	},
	Limits: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1"),
		corev1.ResourceMemory: resource.MustParse("128Mi"),
	},
}

// Tolerations tolerates exactly the given taints of a node: each by its key,
// value and effect, forever (a NoExecute taint does not evict the agent
// mid-trace).
func Tolerations(taints []corev1.Taint) []corev1.Toleration {
	var out []corev1.Toleration
	for _, t := range taints {
		tol := corev1.Toleration{Key: t.Key, Operator: corev1.TolerationOpEqual, Value: t.Value, Effect: t.Effect}
		if t.Value == "" {
			tol.Operator, tol.Value = corev1.TolerationOpExists, ""
		}
		out = append(out, tol)
	}
	return out
}

// EphemeralContainer builds the pod agent for one pod. The agent reads
// its control lines on stdin (StdinOnce: when the plugin detaches, stdin
// closes and the agent stops) and exits by its deadline in any case. A
// lingering agent (--linger in args) keeps its stdin across attaches
// (StdinOnce false): reruns attach again, and it exits after its linger
// time, at its --lifetime, or on an exit line.
func EphemeralContainer(p AgentParams, args []string) corev1.EphemeralContainer {
	return corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name:                     ContainerName(p.Session),
			Image:                    p.Image,
			ImagePullPolicy:          p.PullPolicy,
			Command:                  []string{AgentCommand},
			Args:                     args,
			Stdin:                    true,
			StdinOnce:                !lingers(args),
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			SecurityContext:          p.securityContextFor(p.Unprivileged),
		},
	}
}

// WithEphemeralContainer returns a copy of pod with the container added:
// the new object for the strategic merge patch on pods/ephemeralcontainers.
func WithEphemeralContainer(pod *corev1.Pod, ec corev1.EphemeralContainer) *corev1.Pod {
	out := pod.DeepCopy()
	out.Spec.EphemeralContainers = append(out.Spec.EphemeralContainers, ec)
	return out
}

// NodePod builds the node agent: a short-lived hostNetwork pod pinned to
// the node, tolerating the node's taints (p.NodeTaints) and no others, never
// restarted, bounded by activeDeadlineSeconds and NodeAgentResources,
// without API credentials or volumes, labelled so that `kubectl podtrace
// cleanup` finds it. A lingering agent (--linger in args) keeps its stdin
// across attaches, is labelled with its warm key (WarmLabel, from
// --warm-key) and bounded by its --lifetime instead of its deadline.
func NodePod(p AgentParams, node string, args []string) *corev1.Pod {
	var secrets []corev1.LocalObjectReference
	for _, s := range p.PullSecrets {
		secrets = append(secrets, corev1.LocalObjectReference{Name: s})
	}
	deadline := int64(p.Deadline/time.Second) + 30
	labels := map[string]string{
		ManagedByLabel: ManagedBy,
		SessionLabel:   p.Session,
		NameLabel:      AgentName,
	}
	linger := lingers(args)
	if linger {
		if life, err := time.ParseDuration(ArgValue(args, "--lifetime")); err == nil && life > 0 {
			deadline = int64(life/time.Second) + 30
		}
		if k := ArgValue(args, "--warm-key"); k != "" {
			labels[WarmLabel] = k
		}
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        NodePodName(p.Session, node),
			Namespace:   p.Namespace,
			Labels:      labels,
			Annotations: map[string]string{"podtrace.dev/node": node},
		},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			HostNetwork:                   true,
			DNSPolicy:                     corev1.DNSClusterFirstWithHostNet,
			RestartPolicy:                 corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:         &deadline,
			TerminationGracePeriodSeconds: ptr.To[int64](2),
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			Tolerations:                   Tolerations(p.NodeTaints[node]),
			ImagePullSecrets:              secrets,
			Containers: []corev1.Container{{
				Name:                     "agent",
				Image:                    p.Image,
				ImagePullPolicy:          p.PullPolicy,
				Command:                  []string{AgentCommand},
				Args:                     args,
				Stdin:                    true,
				StdinOnce:                !linger,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				SecurityContext:          p.nodeSecurityContext(),
				Resources:                *NodeAgentResources.DeepCopy(),
			}},
		},
	}
}
