package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/podtrace/kubectl-podtrace/pkg/kube"
	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/render"
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
	// DryRun is --dry-run: "none" (trace), "server" (the plan and every
	// object, each dry-run by the API server: the preflight) or "client"
	// (the plan and every object, nothing sent but reads).
	DryRun       string
	ReadyTimeout time.Duration
	// Linger keeps the agents armed after the trace for reruns (warm.go).
	Linger time.Duration
	TraceOptions

	// Parsed from the arguments, before any API call (parseArgs).
	srcRef, dstRef kube.Ref
	svcRef         kube.ServiceRef
	isSvc          bool

	// Completed (client may be set beforehand by tests).
	client     kubernetes.Interface
	restConfig *rest.Config
	src, dst   *kube.Target
	// svc is the Service when DST names one; dst is then its endpoint
	// pod when it has exactly one ready endpoint (an agent runs there),
	// else nil, and endpointNodes are the endpoints' nodes agents watch.
	svc               *kube.ServiceTarget
	endpointNodes     []string
	protoSet, portSet bool
	session           string
	notes             []string
	taints            map[string][]corev1.Taint
	// startsReported: the nodes whose kubelet reports a container's start
	// in the pod status at once (the launcher waits for it to attach).
	startsReported map[string]bool
	// mode is the mode preflight chose (modeEphemeral, modeUnprivileged,
	// modeNode), and modeWhy why.
	mode, modeWhy string
	// srcLevel and podLevels are the PodSecurity levels the source's and
	// every traced pod's namespaces enforce (read by Complete).
	srcLevel  nsLevel
	podLevels []nsLevel
}

// maxEndpointNodes bounds the nodes of a Service's endpoints that get a
// node agent (the source's node always has one): kube-proxy picks an
// endpoint at random, so the trace watches the nodes of the first ready
// endpoints (by address), and says when it left some out.
const maxEndpointNodes = 3

// NewClusterOptions returns options with defaults.
func NewClusterOptions(t TraceOptions) *ClusterOptions {
	return &ClusterOptions{ConfigFlags: genericclioptions.NewConfigFlags(true), DryRun: dryRunNone, TraceOptions: t}
}

// AddFlags registers the cluster flags.
func (o *ClusterOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", version.AgentImage, "agent `IMAGE` (a mirror for air-gapped clusters)")
	f.StringVar(&o.PullPolicy, "image-pull-policy", string(corev1.PullIfNotPresent), "agent image pull policy: Always, IfNotPresent or Never")
	f.StringArrayVar(&o.PullSecrets, "image-pull-secret", nil, "image pull secret in the agent namespace for node agents (repeatable); pod agents use the pod's own pull secrets")
	f.StringVar(&o.AgentNamespace, "agent-namespace", kube.DefaultAgentNamespace, "namespace of the node agents (deploy/agent-namespace.yaml)")
	f.StringVar(&o.Mode, "mode", modeAuto, "auto: the richest mode the pods' namespaces admit (PodSecurity), said on stderr and in the trace; ephemeral: capture agents in both pods (they add NET_RAW and NET_ADMIN: PodSecurity privileged) and on their nodes; unprivileged: an agent without privilege in the source pod only sends the probe (PodSecurity baseline and restricted admit it), the node agents capture; node: node agents only (with --passive)")
	f.StringVar(&o.DryRun, "dry-run", "none", "print the plan and every object it would create or patch, as YAML, and exit, creating nothing: server (also bare --dry-run): the API server dry-runs every object first (RBAC, PodSecurity and admission policies answer, as before a trace); client: the objects as built, with no access review or dry run sent (only reads); none: trace")
	f.Lookup("dry-run").NoOptDefVal = dryRunServer
	f.DurationVar(&o.ReadyTimeout, "ready-timeout", 2*time.Minute, "how long an agent may take to run (image pull included)")
	completeValues(cmd, "mode", "auto\tthe richest mode the namespaces admit", "ephemeral\tcapture agents in both pods", "unprivileged\tan unprivileged prober in the source pod", "node\tnode agents only (with --passive)")
	completeValues(cmd, "dry-run", "server\tthe API server dry-runs every object", "client\tthe objects as built, nothing sent", "none\ttrace")
	completeValues(cmd, "image-pull-policy", string(corev1.PullAlways), string(corev1.PullIfNotPresent), string(corev1.PullNever))
	o.addLingerFlag(cmd)
	addKubeFlags(cmd, o.ConfigFlags)
}

// parseArgs reads SRC and DST, with the kubeconfig's namespace for names
// without one: no API call.
func (o *ClusterOptions) parseArgs(args []string) error {
	if len(args) != 2 {
		if len(args) == 3 && o.DryRun != dryRunNone && slices.Contains(dryRunValues, args[2]) {
			return fmt.Errorf("%q after --dry-run is taken as a third pod: write --dry-run=%s", args[2], args[2])
		}
		return fmt.Errorf("want a source and a destination pod, got %d argument(s): kubectl podtrace SRC DST (try `kubectl podtrace --help`)", len(args))
	}
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return fmt.Errorf("read the kubeconfig: %w", err)
	}
	if o.srcRef, err = kube.ParseRef(args[0], ns); err != nil {
		return err
	}
	if o.svcRef, o.isSvc, err = kube.ParseServiceRef(args[1], ns); err != nil {
		return err
	}
	o.dstRef = kube.Ref{}
	if !o.isSvc {
		if o.dstRef, err = kube.ParseRef(args[1], ns); err != nil {
			return err
		}
	}
	if o.srcRef == o.dstRef {
		return fmt.Errorf("source and destination are the same pod %s: trace between two different pods", o.srcRef)
	}
	if o.isSvc && o.Passive {
		return errors.New("--passive observes traffic between two pods: trace to one of the Service's pods")
	}
	// A Service's port chooses the probe's protocol (Complete).
	o.protoByDst = o.isSvc
	return nil
}

// Complete resolves the pods: the first API calls, made only after the
// arguments and flags were checked (Validate).
func (o *ClusterOptions) Complete(ctx context.Context, args []string) error {
	if err := o.parseArgs(args); err != nil {
		return err
	}
	srcRef, svcRef, dstRef, isSvc := o.srcRef, o.svcRef, o.dstRef, o.isSvc
	var err error
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
	go func() {
		defer wg.Done()
		if isSvc {
			derr = o.completeService(ctx, svcRef, srcRef.Namespace) // a ClusterIP is looked for there when not everywhere
			return
		}
		o.dst, derr = kube.Resolve(ctx, o.client, dstRef)
	}()
	wg.Wait()
	if err := errors.Join(serr, derr); err != nil {
		return err
	}
	o.taints, o.startsReported = map[string][]corev1.Taint{}, map[string]bool{}
	nodes := o.nodes()
	checked := make([]kube.Node, len(nodes))
	errs := make([]error, len(nodes))
	for i, n := range nodes { // each node at once, and the namespaces' levels
		wg.Add(1)
		go func() { defer wg.Done(); checked[i], errs[i] = kube.CheckNode(ctx, o.client, n) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); o.srcLevel, o.podLevels = o.podSecurityLevels(ctx) }()
	wg.Wait()
	for i, n := range nodes {
		if errs[i] != nil {
			return errs[i]
		}
		if node := checked[i]; !node.Readable {
			o.notes = append(o.notes, fmt.Sprintf("node %s could not be read (%s): its node agent tolerates no taint", n, node.Why))
		}
		o.taints[n] = checked[i].Taints
		o.startsReported[n] = kube.ReportsStartAtOnce(checked[i].KubeletVersion)
	}
	o.session = kube.NewSessionID()
	return nil
}

// Dry-run modes, as kubectl spells them.
const (
	dryRunNone   = "none"
	dryRunServer = "server"
	dryRunClient = "client"
)

var dryRunValues = []string{dryRunNone, dryRunServer, dryRunClient}

// ValidateArgs checks the arguments and every flag, reading nothing but
// the kubeconfig file: a typo is reported before any API call, whichever
// cluster the kubeconfig or --server names.
func (o *ClusterOptions) ValidateArgs(args []string) error {
	if err := o.parseArgs(args); err != nil {
		return err
	}
	return o.Validate()
}

// Validate checks flag combinations (no API call).
func (o *ClusterOptions) Validate() error {
	if !slices.Contains(dryRunValues, o.DryRun) {
		return fmt.Errorf("--dry-run %q: want server, client or none", o.DryRun)
	}
	switch o.Mode {
	case modeAuto, modeEphemeral:
	case modeUnprivileged:
		if o.Passive {
			return errors.New("--mode unprivileged sends a probe and captures nothing in the pods: for --passive use --mode node (or auto)")
		}
	case modeNode:
		if !o.Passive {
			return errors.New("--mode node runs no agent inside the pods, so nothing can send a probe from the source pod: add --passive to observe existing traffic, or use --mode unprivileged or ephemeral")
		}
	default:
		return fmt.Errorf("--mode %q: want auto, ephemeral, unprivileged or node", o.Mode)
	}
	switch corev1.PullPolicy(o.PullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("--image-pull-policy %q: want Always, IfNotPresent or Never", o.PullPolicy)
	}
	if o.Image == "" {
		return errors.New("--image must name the agent image")
	}
	if o.Linger < 0 {
		return fmt.Errorf("--linger %s: want a duration >= 0 (0: the agents end with the trace)", o.Linger)
	}
	return o.TraceOptions.Validate()
}

func (o *ClusterOptions) nodes() []string {
	out := []string{o.src.Node}
	add := func(n string) {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if o.dst != nil {
		add(o.dst.Node)
	}
	for _, n := range o.endpointNodes {
		add(n)
	}
	return out
}

// completeService resolves a Service destination: its port and protocol
// become the probe's, its endpoints the nodes to watch; with one ready
// endpoint, that pod gets an agent too.
func (o *ClusterOptions) completeService(ctx context.Context, r kube.ServiceRef, ns string) error {
	if r.Port == "" && o.portSet {
		r.Port = strconv.Itoa(o.Port)
	}
	t, err := kube.ResolveService(ctx, o.client, r, ns)
	if err != nil {
		return err
	}
	o.svc = t
	switch {
	case !o.protoSet || o.Proto == "icmp":
		if o.protoSet {
			o.notes = append(o.notes, fmt.Sprintf("ICMP to a Service's virtual IP is not answered (kube-proxy translates only its ports): probing %s port %d instead",
				strings.ToUpper(t.Proto), t.Port.Port))
		} else {
			o.notes = append(o.notes, fmt.Sprintf("probing Service %s/%s with %s to port %d (its port's protocol; ICMP to a virtual IP is not answered)",
				t.Svc.Namespace, t.Svc.Name, strings.ToUpper(t.Proto), t.Port.Port))
		}
		o.Proto = t.Proto
	case o.Proto != t.Proto:
		return fmt.Errorf("--proto %s, but Service %s/%s port %d is %s: leave --proto out or give %s", o.Proto, t.Svc.Namespace, t.Svc.Name, t.Port.Port, t.Port.Protocol, t.Proto)
	}
	o.Port = int(t.Port.Port)
	ready := t.Ready()
	for _, e := range ready {
		if e.Node == "" || slices.Contains(o.endpointNodes, e.Node) {
			continue
		}
		if len(o.endpointNodes) == maxEndpointNodes {
			o.notes = append(o.notes, fmt.Sprintf("Service %s/%s has endpoints on more than %d nodes: agents watch %s only; a probe translated to an endpoint elsewhere is followed to the node it leaves",
				t.Svc.Namespace, t.Svc.Name, maxEndpointNodes, strings.Join(o.endpointNodes, ", ")))
			break
		}
		o.endpointNodes = append(o.endpointNodes, e.Node)
	}
	if len(ready) == 1 && ready[0].Pod != nil {
		if dst, err := kube.Resolve(ctx, o.client, *ready[0].Pod); err == nil {
			o.dst = dst
		}
	}
	return nil
}

func (o *ClusterOptions) params() kube.AgentParams {
	return kube.AgentParams{Session: o.session, Image: o.Image, PullPolicy: corev1.PullPolicy(o.PullPolicy),
		PullSecrets: o.PullSecrets, Capabilities: "capture", KernelDrops: o.KernelDrops && !o.Passive, Unprivileged: o.mode == modeUnprivileged,
		Deadline: o.AgentDeadline(), Namespace: o.AgentNamespace, NodeTaints: o.taints}
}

// Plan places the agents of a mode: a capture agent in each pod (the
// source's probes) in mode ephemeral, an unprivileged prober in the
// source pod only in mode unprivileged, none in mode node; and one on
// each node involved.
func (o *ClusterOptions) Plan(mode string) session.Plan {
	endpoint := func(t *kube.Target) trace.Endpoint {
		return trace.Endpoint{Name: t.Ref.String(), Short: t.Ref.Name, IP: t.IP, Node: t.Node}
	}
	var s trace.Session
	var hosts []string
	if o.svc != nil {
		s, hosts = o.serviceSession(endpoint)
	} else {
		s = trace.Session{Src: endpoint(o.src), Dst: endpoint(o.dst), Probe: o.ProbeSpec(o.dst.IP)}
		hosts = []string{o.src.IP, o.dst.IP}
	}
	if mode != "" {
		s.Mode = &trace.Mode{Name: mode, Why: o.modeWhy}
	}
	p := session.Plan{Session: s}
	id := func(t *kube.Target) string {
		if o.dst != nil && o.src.Ref.Name == o.dst.Ref.Name {
			return t.Ref.String()
		}
		return t.Ref.Name
	}
	add := func(spec launch.Spec) {
		o.Apply(&spec)
		o.applyLinger(&spec)
		p.Agents = append(p.Agents, spec)
	}
	switch mode {
	case modeUnprivileged:
		// It captures nothing: no filter, no payload; it sends the probe.
		p.Session.Src.Agent = id(o.src)
		spec := launch.Spec{ID: id(o.src), Role: wire.RolePod, Name: id(o.src), Node: o.src.Node, Target: o.src.Ref.String(), Hosts: hosts, Probe: s.Probe}
		o.Apply(&spec)
		spec.Filter, spec.Payload, spec.Snaplen, spec.Unprivileged = "", false, 0, true
		o.applyLinger(&spec)
		p.Agents = append(p.Agents, spec)
	case modeEphemeral:
		p.Session.Src.Agent = id(o.src)
		add(launch.Spec{ID: id(o.src), Role: wire.RolePod, Name: id(o.src), Node: o.src.Node, Target: o.src.Ref.String(), Hosts: hosts, Probe: s.Probe})
		if o.dst != nil {
			p.Session.Dst.Agent = id(o.dst)
			add(launch.Spec{ID: id(o.dst), Role: wire.RolePod, Name: id(o.dst), Node: o.dst.Node, Target: o.dst.Ref.String(), Hosts: hosts})
		}
	}
	for _, n := range o.nodes() {
		add(launch.Spec{ID: n, Role: wire.RoleNode, Name: n, Node: n, Target: n, Hosts: hosts})
	}
	return p
}

// serviceSession is the session of a trace to a Service: the probe goes
// to its ClusterIP and port, may be translated (NAT), and the destination
// is its one ready endpoint, else its address until the DNAT names one.
// The agents' hosts are the source, the ClusterIP, then the endpoints'
// addresses (their address resolution is on the path).
func (o *ClusterOptions) serviceSession(endpoint func(*kube.Target) trace.Endpoint) (trace.Session, []string) {
	t := o.svc
	name := t.Svc.Namespace + "/" + t.Svc.Name
	sv := &trace.Service{Name: name, IP: t.ClusterIP, Port: int(t.Port.Port), NoEndpoints: t.NoEndpoints()}
	hosts := []string{o.src.IP, t.ClusterIP}
	for _, e := range t.Ready() {
		d := trace.Endpoint{Name: e.IP, Short: e.IP, IP: e.IP, Node: e.Node}
		if e.Pod != nil {
			d.Name, d.Short = e.Pod.String(), e.Pod.Name
		}
		sv.Endpoints = append(sv.Endpoints, d)
		if len(hosts) < 2+maxEndpointNodes*4 {
			hosts = append(hosts, e.IP)
		}
	}
	dst := trace.Endpoint{Name: "svc/" + name, Short: t.Svc.Name, IP: t.ClusterIP}
	if o.dst != nil {
		dst = endpoint(o.dst)
	}
	s := trace.Session{Src: endpoint(o.src), Dst: dst, Probe: o.ProbeSpec(t.ClusterIP), Service: sv}
	if s.Probe != nil {
		s.Probe.NAT = true
	}
	return s, hosts
}

// preflight chooses the mode (chooseMode: the requested one, or the
// richest the namespaces' PodSecurity labels admit), checks permissions
// and asks the API server to dry-run every patch and create of its plan:
// nothing is created when it fails. With --mode auto, a PodSecurity
// refusal (a level the labels did not tell: a cluster default, or labels
// the user may not read) steps down to the next mode and says why. It
// sets o.mode and o.modeWhy.
func (o *ClusterOptions) preflight(ctx context.Context) error {
	check := func(mode string) error {
		var needs []kube.Access
		switch mode {
		case modeUnprivileged:
			// Only the source pod gets an agent.
			needs = kube.Needs([]string{o.src.Ref.Namespace}, true, o.AgentNamespace)
			if o.dst != nil && o.dst.Ref.Namespace != o.src.Ref.Namespace {
				needs = append(kube.Needs([]string{o.dst.Ref.Namespace}, false, o.AgentNamespace)[:1], needs...)
			}
		default:
			nss := []string{o.src.Ref.Namespace}
			if o.dst != nil {
				nss = append(nss, o.dst.Ref.Namespace)
			}
			needs = kube.Needs(nss, mode != modeNode, o.AgentNamespace)
		}
		o.mode = mode
		p := o.params()
		plan := o.Plan(mode)
		// The access reviews and the dry runs all at once: one round trip
		// to the API server, not one per object. A missing permission is
		// reported as the reviews list it (all of them, with what each is
		// for), before the dry runs' own refusals.
		var wg sync.WaitGroup
		access := make(chan error, 1)
		go func() { access <- kube.CheckAccess(ctx, o.client, needs) }()
		dry := make([]error, len(plan.Agents))
		for i, a := range plan.Agents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch a.Role {
				case wire.RolePod:
					t := o.src
					if o.dst != nil && a.Target == o.dst.Ref.String() {
						t = o.dst
					}
					dry[i] = kube.PatchEphemeral(ctx, o.client, t.Pod, kube.EphemeralContainer(p, a.Args()), true)
				case wire.RoleNode:
					_, dry[i] = kube.CreateNodePod(ctx, o.client, kube.NodePod(p, a.Target, a.Args()), true)
				}
			}()
		}
		wg.Wait()
		if err := <-access; err != nil {
			return err
		}
		for _, err := range dry {
			if err != nil {
				return err
			}
		}
		return nil
	}
	mode, why := chooseMode(o.Mode, o.Passive, o.srcLevel, o.podLevels)
	o.modeWhy = why
	err := check(mode)
	var pe *kube.PodSecurityError
	if next := stepDown(mode, o.Passive); err != nil && errors.As(err, &pe) && o.Mode == modeAuto && next != "" {
		cause := fmt.Sprintf("PodSecurity %q in namespace %q refused the capture agent in the pod (server-side dry run)", pe.Level, pe.Namespace)
		o.modeWhy = whyNode(cause)
		if next == modeUnprivileged {
			o.modeWhy = whyUnprivileged(cause)
		}
		mode = next
		err = check(mode)
	}
	if err != nil && errors.As(err, &pe) && mode == modeUnprivileged {
		// PodSecurity evaluates the whole pod with the container added:
		// the pod's own containers do not meet the level.
		return fmt.Errorf("preflight: %w; nothing was created. Even the unprivileged agent (non-root, no capability) is refused: the pod's own containers do not meet PodSecurity %q (it judges the whole pod); observe from the node side instead (--mode node --passive)", err, pe.Level)
	}
	if err != nil && errors.As(err, &pe) {
		return fmt.Errorf("preflight: %w; nothing was created. To proceed: %s", err, kube.PodSecurityHint(err))
	}
	if err != nil && o.KernelDrops && strings.Contains(err.Error(), kernelDropsRefused) {
		return fmt.Errorf("preflight: --kernel-drops needs capabilities BPF and PERFMON on the node agent pods in namespace %q, which the admission policy does not allow there; nothing was created. To proceed: run without --kernel-drops, or ask an admin to allow them (kubectl -n podtrace-system patch configmap podtrace-agent-policy --type merge -p '{\"data\":{\"kernelDrops\":\"allow\"}}', see deploy/README.md)", o.AgentNamespace)
	}
	if err != nil {
		return fmt.Errorf("%w; nothing was created", err)
	}
	o.mode = mode
	fmt.Fprintf(o.ErrOut, "podtrace: mode %s: %s\n", mode, render.Safe(o.modeWhy))
	return nil
}

// podSecurityLevels reads the PodSecurity level the traced pods'
// namespaces enforce (their labels; get namespaces, which the user role
// grants): the source's, and every traced pod's. A namespace that cannot
// be read has level "" (unknown: the dry run judges).
func (o *ClusterOptions) podSecurityLevels(ctx context.Context) (src nsLevel, pods []nsLevel) {
	nss := []string{o.src.Ref.Namespace}
	if o.dst != nil && o.dst.Ref.Namespace != o.src.Ref.Namespace {
		nss = append(nss, o.dst.Ref.Namespace)
	}
	out := make([]nsLevel, len(nss))
	var wg sync.WaitGroup
	for i, ns := range nss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = nsLevel{Namespace: ns}
			n, err := o.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if err == nil {
				out[i] = enforceLevel(ns, n.Labels)
			}
		}()
	}
	wg.Wait()
	return out[0], out
}

// kernelDropsRefused is what deploy/admission-policy.yaml says when it
// refuses the capabilities --kernel-drops adds to node agents.
const kernelDropsRefused = "BPF and PERFMON only where kernelDrops is allowed"

// Run traces.
func (o *ClusterOptions) Run(ctx context.Context) error {
	fmt.Fprintf(o.ErrOut, "podtrace: session %s: %s (%s, node %s) → %s\n", o.session, o.src.Ref, o.src.IP, o.src.Node, o.dstText())
	model := o.startPolicyModel(ctx)
	if o.DryRun == dryRunClient {
		o.mode, o.modeWhy = chooseMode(o.Mode, o.Passive, o.srcLevel, o.podLevels)
		o.notes = append(o.notes, "client dry run: no access review and no server-side dry run were sent; --dry-run=server checks each object with the API server", model.line())
		return o.printDryRun(o.Out, o.Plan(o.mode))
	}
	if o.DryRun == dryRunNone && o.lingers() {
		if done, err := o.runWarm(ctx); done {
			return err
		}
	}
	if err := o.preflight(ctx); err != nil {
		return err
	}
	o.timeline.Mark("", "preflight passed (access reviews, server-side dry runs)")
	plan := o.Plan(o.mode)
	o.annotate = model.annotate
	if o.DryRun == dryRunServer {
		o.notes = append(o.notes, model.line())
		return o.printDryRun(o.Out, plan)
	}
	setLeftover(fmt.Sprintf("node agent pods of session %s may be left in namespace %s (they end by themselves within %s): delete them now with `kubectl podtrace cleanup --session %s`; agent containers added to pods exit at their deadline",
		o.session, o.AgentNamespace, o.AgentDeadline(), o.session))
	l := o.launcher()
	defer func() {
		if err := l.Cleanup(); err != nil {
			fmt.Fprintf(o.ErrOut, "podtrace: cleanup: %v\n", err)
		}
		o.timeline.Mark("", "teardown checked (nothing of the session left)")
	}()
	if o.mode != modeNode {
		who := o.src.Ref.String()
		if o.dst != nil && o.mode == modeEphemeral {
			who += " and " + o.dst.Ref.String()
		}
		o.notes = append(o.notes, fmt.Sprintf("agent container %s added to %s (ephemeral containers stay in the pod spec; the agent exits by itself)",
			kube.ContainerName(o.session), who))
	}
	var left []session.Lingering
	o.lingered = func(ls []session.Lingering) { left = ls }
	err := o.RunPlan(ctx, l, plan, o.notes)
	if o.lingers() && (err == nil || errors.As(err, new(*ExitCodeError))) {
		// A trace that reached its verdict: its agents stay for reruns.
		l.Keep()
		fmt.Fprintf(o.ErrOut, "podtrace: %s\n", lingerLine(left, o.Linger, time.Now()))
	}
	return err
}

// printDryRun prints the plan and the objects as YAML.
func (o *ClusterOptions) printDryRun(w io.Writer, plan session.Plan) error {
	p := o.params()
	fmt.Fprintf(w, "# kubectl podtrace dry run, session %s: nothing was created\n", o.session)
	fmt.Fprintf(w, "# trace %s (%s) → %s, %s\n", o.src.Ref, o.src.IP, o.dstText(), probeLine(plan.Session.Probe))
	fmt.Fprintf(w, "# mode %s: %s\n", o.mode, render.Safe(o.modeWhy))
	for _, n := range o.notes {
		fmt.Fprintf(w, "# note: %s\n", n)
	}
	for _, a := range plan.Agents {
		switch a.Role {
		case wire.RolePod:
			t := o.src
			if o.dst != nil && a.Target == o.dst.Ref.String() {
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
			ends := "deleted when the trace ends"
			if a.Linger > 0 {
				ends = fmt.Sprintf("lingers %s after the trace for reruns; `kubectl podtrace cleanup` deletes it", a.Linger)
			}
			fmt.Fprintf(w, "---\n# agent %s: node agent pod on node %s (%s)\n%s", a.ID, a.Target, ends, y)
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

// dstText names the destination for progress lines and the dry run.
func (o *ClusterOptions) dstText() string {
	if t := o.svc; t != nil {
		s := fmt.Sprintf("Service %s/%s %s (%d ready endpoint(s)", t.Svc.Namespace, t.Svc.Name,
			trace.HostPort(t.ClusterIP, int(t.Port.Port)), len(t.Ready()))
		if len(o.endpointNodes) > 0 {
			s += " on " + strings.Join(o.endpointNodes, ", ")
		}
		return s + ")"
	}
	return fmt.Sprintf("%s (%s, node %s)", o.dst.Ref, o.dst.IP, o.dst.Node)
}
