package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/podtrace/kubectl-podtrace/pkg/kube"
	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	clusterlaunch "github.com/podtrace/kubectl-podtrace/pkg/launch/cluster"
	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/version"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// ClusterOptions trace between two pods of a cluster.
type ClusterOptions struct {
	ConfigFlags    *genericclioptions.ConfigFlags
	Image          string
	PullPolicy     string
	PullSecrets    []string
	AgentNamespace string
	Mode           string
	DryRun         bool
	ReadyTimeout   time.Duration
	TraceOptions

	// Completed (client may be set beforehand by tests).
	client     kubernetes.Interface
	restConfig *rest.Config
	src, dst   *kube.Target
	session    string
	notes      []string
	taints     map[string][]corev1.Taint
}

// NewClusterOptions returns options with defaults.
func NewClusterOptions(t TraceOptions) *ClusterOptions {
	return &ClusterOptions{ConfigFlags: genericclioptions.NewConfigFlags(true), TraceOptions: t}
}

// AddFlags registers the cluster flags.
func (o *ClusterOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", version.AgentImage, "agent image (a mirror for air-gapped clusters)")
	f.StringVar(&o.PullPolicy, "image-pull-policy", string(corev1.PullIfNotPresent), "agent image pull policy: Always, IfNotPresent or Never")
	f.StringArrayVar(&o.PullSecrets, "image-pull-secret", nil, "image pull secret in the agent namespace for node agents (repeatable); pod agents use the pod's own pull secrets")
	f.StringVar(&o.AgentNamespace, "agent-namespace", kube.DefaultAgentNamespace, "namespace of the node agents (deploy/agent-namespace.yaml)")
	f.StringVar(&o.Mode, "mode", "auto", "auto: agents in both pods and on their nodes, or, with --passive where a pod's namespace forbids the agent, node agents only; ephemeral: always inject into the pods; node: node agents only (with --passive)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan and every object it would create or patch, as YAML, and exit; creates nothing")
	f.DurationVar(&o.ReadyTimeout, "ready-timeout", 2*time.Minute, "how long an agent may take to run (image pull included)")
	o.ConfigFlags.AddFlags(f)
}

// Complete resolves the pods.
func (o *ClusterOptions) Complete(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want a source and a destination pod, got %d argument(s): kubectl podtrace SRC DST (try `kubectl podtrace --help`)", len(args))
	}
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return fmt.Errorf("read the kubeconfig: %w", err)
	}
	srcRef, err := kube.ParseRef(args[0], ns)
	if err != nil {
		return err
	}
	dstRef, err := kube.ParseRef(args[1], ns)
	if err != nil {
		return err
	}
	if srcRef == dstRef {
		return fmt.Errorf("source and destination are the same pod %s: trace between two different pods", srcRef)
	}
	if o.client == nil {
		if o.restConfig, err = o.ConfigFlags.ToRESTConfig(); err != nil {
			return fmt.Errorf("read the kubeconfig: %w", err)
		}
		o.restConfig.QPS, o.restConfig.Burst = 50, 100
		if o.client, err = kubernetes.NewForConfig(o.restConfig); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	var serr, derr error
	wg.Add(2)
	go func() { defer wg.Done(); o.src, serr = kube.Resolve(ctx, o.client, srcRef) }()
	go func() { defer wg.Done(); o.dst, derr = kube.Resolve(ctx, o.client, dstRef) }()
	wg.Wait()
	if err := errors.Join(serr, derr); err != nil {
		return err
	}
	o.taints = map[string][]corev1.Taint{}
	for _, n := range o.nodes() {
		node, err := kube.CheckNode(ctx, o.client, n)
		if err != nil {
			return err
		}
		if !node.Readable {
			o.notes = append(o.notes, fmt.Sprintf("node %s could not be read (%s): its node agent tolerates no taint", n, node.Why))
		}
		o.taints[n] = node.Taints
	}
	o.session = kube.NewSessionID()
	return nil
}

// Validate checks flag combinations.
func (o *ClusterOptions) Validate() error {
	switch o.Mode {
	case "auto", "ephemeral":
	case "node":
		if !o.Passive {
			return errors.New("--mode node runs no agent inside the pods, so nothing can send a probe from the source pod: add --passive to observe existing traffic, or use --mode ephemeral")
		}
	default:
		return fmt.Errorf("--mode %q: want auto, ephemeral or node", o.Mode)
	}
	switch corev1.PullPolicy(o.PullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("--image-pull-policy %q: want Always, IfNotPresent or Never", o.PullPolicy)
	}
	if o.Image == "" {
		return errors.New("--image must name the agent image")
	}
	return o.TraceOptions.Validate()
}

func (o *ClusterOptions) nodes() []string {
	if o.src.Node == o.dst.Node {
		return []string{o.src.Node}
	}
	return []string{o.src.Node, o.dst.Node}
}

func (o *ClusterOptions) params() kube.AgentParams {
	return kube.AgentParams{Session: o.session, Image: o.Image, PullPolicy: corev1.PullPolicy(o.PullPolicy),
		PullSecrets: o.PullSecrets, Capabilities: "capture",
		Deadline: o.AgentDeadline(), Namespace: o.AgentNamespace, NodeTaints: o.taints}
}

// Plan places the agents: one in each pod (the source probes) unless
// inject is false, one on each node involved.
func (o *ClusterOptions) Plan(inject bool) session.Plan {
	endpoint := func(t *kube.Target) trace.Endpoint {
		return trace.Endpoint{Name: t.Ref.String(), Short: t.Ref.Name, IP: t.IP, Node: t.Node}
	}
	s := trace.Session{Src: endpoint(o.src), Dst: endpoint(o.dst), Probe: o.ProbeSpec(o.dst.IP)}
	hosts := []string{o.src.IP, o.dst.IP}
	p := session.Plan{Session: s}
	id := func(t *kube.Target) string {
		if o.src.Ref.Name == o.dst.Ref.Name {
			return t.Ref.String()
		}
		return t.Ref.Name
	}
	add := func(spec launch.Spec) {
		o.Apply(&spec)
		p.Agents = append(p.Agents, spec)
	}
	if inject {
		p.Session.Src.Agent, p.Session.Dst.Agent = id(o.src), id(o.dst)
		add(launch.Spec{ID: id(o.src), Role: wire.RolePod, Name: id(o.src), Node: o.src.Node, Target: o.src.Ref.String(), Hosts: hosts, Probe: s.Probe})
		add(launch.Spec{ID: id(o.dst), Role: wire.RolePod, Name: id(o.dst), Node: o.dst.Node, Target: o.dst.Ref.String(), Hosts: hosts})
	}
	for _, n := range o.nodes() {
		add(launch.Spec{ID: n, Role: wire.RoleNode, Name: n, Node: n, Target: n, Hosts: hosts})
	}
	return p
}

// preflight checks permissions and asks the API server to dry-run every
// patch and create of the plan: nothing is created when it fails. It
// returns whether pod agents will be injected.
func (o *ClusterOptions) preflight(ctx context.Context) (bool, error) {
	inject := o.Mode != "node"
	check := func(inject bool) error {
		nss := []string{o.src.Ref.Namespace, o.dst.Ref.Namespace}
		if err := kube.CheckAccess(ctx, o.client, kube.Needs(nss, inject, o.AgentNamespace)); err != nil {
			return err
		}
		p := o.params()
		plan := o.Plan(inject)
		for _, a := range plan.Agents {
			var err error
			switch a.Role {
			case wire.RolePod:
				t := o.src
				if a.Target == o.dst.Ref.String() {
					t = o.dst
				}
				err = kube.PatchEphemeral(ctx, o.client, t.Pod, kube.EphemeralContainer(p, a.Args()), true)
			case wire.RoleNode:
				_, err = kube.CreateNodePod(ctx, o.client, kube.NodePod(p, a.Target, a.Args()), true)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	err := check(inject)
	var pe *kube.PodSecurityError
	if err != nil && errors.As(err, &pe) && inject && o.Mode == "auto" && o.Passive {
		o.notes = append(o.notes, fmt.Sprintf("PodSecurity %q in namespace %q forbids the capture agent in the pod: observing from the nodes only (pod eth0 hops are not observable)", pe.Level, pe.Namespace))
		return false, check(false)
	}
	if err != nil && errors.As(err, &pe) {
		return inject, fmt.Errorf("preflight: %w; nothing was created. To proceed: %s", err, kube.PodSecurityHint(err))
	}
	if err != nil {
		return inject, fmt.Errorf("%w; nothing was created", err)
	}
	return inject, nil
}

// Run traces.
func (o *ClusterOptions) Run(ctx context.Context) error {
	fmt.Fprintf(o.ErrOut, "podtrace: session %s: %s (%s, node %s) → %s (%s, node %s)\n", o.session,
		o.src.Ref, o.src.IP, o.src.Node, o.dst.Ref, o.dst.IP, o.dst.Node)
	inject, err := o.preflight(ctx)
	if err != nil {
		return err
	}
	plan := o.Plan(inject)
	if o.DryRun {
		return o.printDryRun(o.Out, plan)
	}
	setLeftover(fmt.Sprintf("node agent pods of session %s may be left in namespace %s (they end by themselves within %s): delete them now with `kubectl podtrace cleanup --session %s`; agent containers added to pods exit at their deadline",
		o.session, o.AgentNamespace, o.AgentDeadline(), o.session))
	l := &clusterlaunch.Launcher{Client: o.client, Config: o.restConfig, Params: o.params(),
		Pods:     map[string]*corev1.Pod{o.src.Ref.String(): o.src.Pod, o.dst.Ref.String(): o.dst.Pod},
		Progress: o.ErrOut, ReadyTimeout: o.ReadyTimeout}
	defer func() {
		if err := l.Cleanup(); err != nil {
			fmt.Fprintf(o.ErrOut, "podtrace: cleanup: %v\n", err)
		}
	}()
	if inject {
		o.notes = append(o.notes, fmt.Sprintf("agent container %s added to %s and %s (ephemeral containers stay in the pod spec; the agent exits by itself)",
			kube.ContainerName(o.session), o.src.Ref, o.dst.Ref))
	}
	return o.RunPlan(ctx, l, plan, o.notes)
}

// printDryRun prints the plan and the objects as YAML.
func (o *ClusterOptions) printDryRun(w io.Writer, plan session.Plan) error {
	p := o.params()
	fmt.Fprintf(w, "# kubectl podtrace dry run, session %s: nothing was created\n", o.session)
	fmt.Fprintf(w, "# trace %s (%s) → %s (%s), %s\n", o.src.Ref, o.src.IP, o.dst.Ref, o.dst.IP, probeLine(plan.Session.Probe))
	for _, n := range o.notes {
		fmt.Fprintf(w, "# note: %s\n", n)
	}
	for _, a := range plan.Agents {
		switch a.Role {
		case wire.RolePod:
			t := o.src
			if a.Target == o.dst.Ref.String() {
				t = o.dst
			}
			patch, err := kube.EphemeralPatch(t.Pod, kube.EphemeralContainer(p, a.Args()))
			if err != nil {
				return err
			}
			y, err := yaml.JSONToYAML(patch)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "---\n# agent %s: strategic merge patch of pods/ephemeralcontainers on pod %s\n%s", a.ID, t.Ref, y)
		case wire.RoleNode:
			y, err := yaml.Marshal(kube.NodePod(p, a.Target, a.Args()))
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "---\n# agent %s: node agent pod on node %s (deleted when the trace ends)\n%s", a.ID, a.Target, y)
		}
	}
	return nil
}

func probeLine(p *wire.ProbeSpec) string {
	if p == nil {
		return "passive"
	}
	s := fmt.Sprintf("probe %s ×%d", p.Proto, p.Count)
	if p.Port != 0 {
		s += fmt.Sprintf(" to port %d", p.Port)
	}
	return strings.TrimSpace(s)
}
