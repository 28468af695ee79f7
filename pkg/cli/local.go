//go:build linux

package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/launch/local"
	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// LocalOptions trace between network namespaces of this host.
type LocalOptions struct {
	From        string
	To          string
	NodeNetNS   []string
	Via         string
	AgentBinary string
	TraceOptions

	src, dst    localEnd
	binary      string
	nodeTargets []string
}

type localEnd struct {
	netns string // "" when the end is only an IP
	name  string
	ip    string
}

// NewCmdLocal is `kubectl podtrace local`.
func NewCmdLocal(streams genericiooptions.IOStreams) *cobra.Command {
	o := &LocalOptions{TraceOptions: TraceOptions{IOStreams: streams}}
	cmd := &cobra.Command{
		Use:   "local --from NETNS --to NETNS|IP [--node-netns NETNS]...",
		Short: "Trace between two network namespaces of this host (root)",
		Long: `Trace between two network namespaces of this host, with the same agents and
pipeline as on a cluster. NETNS is a name under /var/run/netns or a path such as
/proc/PID/ns/net. The node namespaces (the ones holding the host ends of the veth
pairs, the bridge, the uplink) default to the current one.`,
		Example: `  # Two namespaces joined by veth pairs to a bridge in the current namespace
  kubectl podtrace local --from blue --to red

  # The node is a namespace too; TCP to port 8080, three probes
  kubectl podtrace local --from blue --to red --node-netns node1 --proto tcp --port 8080 --count 3

  # Who answers for an address nobody has? (An address the node translates, such as
  # a Service's virtual IP, is followed through the DNAT to the endpoint it chose.)
  kubectl podtrace local --from blue --to 10.0.0.99 --node-netns node1

  # Through a virtual IP that the node DNATs to red's port 8080, watching red too
  kubectl podtrace local --from blue --via 10.96.0.10 --to red --node-netns node1 --proto tcp --port 80`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.startTimeline()
			defer o.printTiming()
			if err := o.ValidateFlags(); err != nil {
				return err
			}
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.From, "from", "", "source network namespace (name or path)")
	f.StringVar(&o.To, "to", "", "destination network namespace (name or path), or an IP address")
	f.StringArrayVar(&o.NodeNetNS, "node-netns", nil, "node network namespace to watch (repeatable; default: the current one)")
	f.StringVar(&o.Via, "via", "", "send the probe to this virtual IP (a Service's ClusterIP, an address a DNAT rule rewrites) and follow it through the translation; --to is watched as the endpoint")
	f.StringVar(&o.AgentBinary, "agent-binary", "", "path of podtrace-agent (default: next to this executable, then PATH)")
	o.AddFlags(cmd)
	return cmd
}

// ValidateFlags checks the flags on their own, before anything is read
// of the host: a typo is reported as such, also when not root.
func (o *LocalOptions) ValidateFlags() error {
	if o.From == "" || o.To == "" {
		return errors.New("both --from and --to are required, e.g. `kubectl podtrace local --from ns-a --to ns-b`")
	}
	if o.Via != "" && net.ParseIP(o.Via) == nil {
		return fmt.Errorf("--via %q is not an IP address", o.Via)
	}
	if o.Via != "" && o.Passive {
		return errors.New("--via sends the probe through a translation: it has no meaning with --passive")
	}
	return o.TraceOptions.Validate()
}

// Complete resolves namespaces and addresses.
func (o *LocalOptions) Complete() error {
	if err := o.ValidateFlags(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("local traces enter network namespaces and open raw sockets: run as root")
	}
	var err error
	if o.src, err = resolveEnd(o.From); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if o.src.netns == "" {
		return fmt.Errorf("--from %q must be a network namespace: the probe is sent from there", o.From)
	}
	if o.dst, err = resolveEnd(o.To); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	if o.Via != "" {
		ip := net.ParseIP(o.Via)
		if ip == nil {
			return fmt.Errorf("--via %q is not an IP address", o.Via)
		}
		if (ip.To4() == nil) != (net.ParseIP(o.src.ip).To4() == nil) {
			return fmt.Errorf("--via %s and --from's address %s are of different families", ip, o.src.ip)
		}
		o.Via = ip.String()
	}
	o.nodeTargets = o.NodeNetNS
	if len(o.nodeTargets) == 0 {
		o.nodeTargets = []string{""}
	}
	for _, n := range o.NodeNetNS {
		if _, err := os.Stat(nsFile(n)); err != nil {
			return fmt.Errorf("--node-netns %q: no such network namespace (see `ip netns list`)", n)
		}
	}
	o.binary, err = local.FindAgent(o.AgentBinary)
	return err
}

// Validate checks flag combinations.
func (o *LocalOptions) Validate() error {
	if o.src.ip == o.dst.ip {
		return fmt.Errorf("--from and --to are the same address %s", o.src.ip)
	}
	if o.Via != "" && o.dst.netns == "" {
		return fmt.Errorf("--via %s needs --to to be the endpoint's network namespace (to trace to an address, give it as --to)", o.Via)
	}
	return nil
}

// Run traces.
func (o *LocalOptions) Run(ctx context.Context) error {
	plan := localPlan(&o.TraceOptions, o.src, o.dst, o.Via, o.nodeTargets)
	setLeftover(fmt.Sprintf("agent processes of this run may be left: they stop when their input closes, at the latest at their deadline (%s after they started)", o.AgentDeadline()))
	return o.RunPlan(ctx, &local.Launcher{Binary: o.binary}, plan, nil)
}

// localPlan: a pod agent in each end that is a namespace (the source one
// probes), a node agent in each node namespace. A probe to a bare address,
// or through --via, may be translated on the way: the agents follow it
// to any address, and node agents report its conntrack translations.
func localPlan(t *TraceOptions, src, dst localEnd, via string, nodes []string) session.Plan {
	target := dst.ip
	if via != "" {
		target = via
	}
	s := trace.Session{
		Src:   trace.Endpoint{Name: src.name, Short: src.name, IP: src.ip, Agent: src.name},
		Dst:   trace.Endpoint{Name: dst.name, Short: dst.name, IP: dst.ip},
		Probe: t.ProbeSpec(target),
	}
	if s.Probe != nil && (via != "" || dst.netns == "") {
		s.Probe.NAT = true
	}
	hosts := []string{src.ip, target}
	if via != "" {
		s.Service = &trace.Service{Name: via, IP: via, Port: t.Port, Endpoints: []trace.Endpoint{s.Dst}}
		hosts = append(hosts, dst.ip) // the endpoint's address resolution is on the path too
	}
	p := session.Plan{Session: s}
	add := func(spec launch.Spec) {
		t.Apply(&spec)
		p.Agents = append(p.Agents, spec)
	}
	add(launch.Spec{ID: src.name, Role: wire.RolePod, Name: src.name, Target: src.netns, Hosts: hosts, Probe: s.Probe})
	if dst.netns != "" {
		p.Session.Dst.Agent = dst.name
		add(launch.Spec{ID: dst.name, Role: wire.RolePod, Name: dst.name, Target: dst.netns, Hosts: hosts})
	}
	for i, n := range nodes {
		id := "node"
		if n != "" {
			id = filepath.Base(n)
		} else if len(nodes) > 1 {
			id = fmt.Sprintf("node%d", i+1)
		}
		add(launch.Spec{ID: id, Role: wire.RoleNode, Name: id, Target: n, Hosts: hosts})
	}
	return p
}

func nsFile(n string) string {
	if strings.Contains(n, "/") {
		return n
	}
	return "/var/run/netns/" + n
}

// resolveEnd reads the address of a namespace's first global IP, or takes
// an IP as it is.
func resolveEnd(arg string) (localEnd, error) {
	if ip := net.ParseIP(arg); ip != nil {
		return localEnd{name: ip.String(), ip: ip.String()}, nil
	}
	path := nsFile(arg)
	h, err := netns.GetFromPath(path)
	if err != nil {
		return localEnd{}, fmt.Errorf("network namespace %q: %w (see `ip netns list`)", arg, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return localEnd{}, fmt.Errorf("network namespace %q: %w", arg, err)
	}
	defer nl.Close()
	addrs, err := nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return localEnd{}, fmt.Errorf("addresses of %q: %w", arg, err)
	}
	for _, fam := range []bool{true, false} { // IPv4 first
		for _, a := range addrs {
			if a.IP.IsGlobalUnicast() && (a.IP.To4() != nil) == fam {
				return localEnd{netns: arg, name: filepath.Base(arg), ip: a.IP.String()}, nil
			}
		}
	}
	return localEnd{}, fmt.Errorf("network namespace %q has no global IP address to trace to or from", arg)
}
