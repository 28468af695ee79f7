//go:build linux

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/podtrace/kubectl-podtrace/pkg/lab"
	"github.com/podtrace/kubectl-podtrace/pkg/launch/local"
)

// LabOptions build a throw-away node and trace across it.
type LabOptions struct {
	Topology    string
	From, To    string
	Keep        bool
	Cleanup     bool
	AgentBinary string
	TraceOptions
}

// NewCmdLab is `kubectl podtrace lab`.
func NewCmdLab(streams genericiooptions.IOStreams) *cobra.Command {
	o := &LabOptions{TraceOptions: TraceOptions{IOStreams: streams}}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Build a throw-away node from network namespaces and trace across it (root; no cluster needed)",
		Long: `Build throw-away nodes out of network namespaces, trace pod-a → pod-b, print the
trace, and tear everything down (also on Ctrl-C or failure) unless --keep.
ARP caches start cold. Topologies:

  bridge  one node, bridge cni0, pod-a, pod-b, pod-c on one subnet (bridge CNI)
  vxlan   two nodes joined by an underlay, each with cni0 and a VXLAN device
          flannel.1 (VNI 1, port 8472): pod-a, pod-c on node1, pod-b, pod-d on
          node2 (flannel)
  routed  one node without a bridge: cali* veths with proxy ARP, a /32 route per
          pod, pods' gateway 169.254.1.1 (Calico)`,
		Example: `  kubectl podtrace lab
  kubectl podtrace lab --topology vxlan     # across two nodes through the overlay
  kubectl podtrace lab --topology routed    # proxy ARP, no bridge
  kubectl podtrace lab --to pod-c --proto tcp --port 9 -o json
  kubectl podtrace lab --keep          # leave the namespaces for poking around
  kubectl podtrace lab --cleanup       # remove what a --keep or a crashed run left`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Cleanup {
				return o.runCleanup()
			}
			o.startTimeline()
			defer o.printTiming()
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Topology, "topology", "bridge", "lab topology: "+strings.Join(lab.Topologies, ", "))
	f.StringVar(&o.From, "from", "pod-a", "source pod of the lab")
	f.StringVar(&o.To, "to", "pod-b", "destination pod of the lab, or an IP address")
	f.BoolVar(&o.Keep, "keep", false, "leave the lab's namespaces in place after the trace")
	f.BoolVar(&o.Cleanup, "cleanup", false, "remove every lab namespace left behind, then exit")
	f.StringVar(&o.AgentBinary, "agent-binary", "", "path of podtrace-agent (default: next to this executable, then PATH)")
	o.AddFlags(cmd)
	completeValues(cmd, "topology", lab.Topologies...)
	return cmd
}

// Validate checks the flags, then the privilege: a typo is reported as
// such, also when not root.
func (o *LabOptions) Validate() error {
	ok := false
	for _, t := range lab.Topologies {
		ok = ok || t == o.Topology
	}
	if !ok {
		return fmt.Errorf("--topology %q: want one of %s", o.Topology, strings.Join(lab.Topologies, ", "))
	}
	if err := o.TraceOptions.Validate(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("the lab creates network namespaces and veth pairs: run it as root (e.g. `sudo kubectl podtrace lab`)")
	}
	return nil
}

// Run builds the lab, traces, and tears it down.
func (o *LabOptions) Run(ctx context.Context) (err error) {
	bin, err := local.FindAgent(o.AgentBinary)
	if err != nil {
		return err
	}
	prefix := lab.NewPrefix()
	fmt.Fprintf(o.ErrOut, "podtrace: building the %s lab %s\n", o.Topology, prefix)
	setLeftover(fmt.Sprintf("the lab's network namespaces %s-* may be left: remove them with `kubectl podtrace lab --cleanup`", prefix))
	l, err := lab.Build(ctx, lab.Options{Topology: o.Topology, Prefix: prefix})
	if err != nil {
		return err
	}
	defer func() {
		if o.Keep {
			var names []string
			for _, n := range l.Nodes {
				names = append(names, n.NetNS)
			}
			for _, p := range l.Pods {
				names = append(names, p.NetNS)
			}
			fmt.Fprintf(o.ErrOut, "podtrace: kept the lab: %s (try `ip netns exec %s ip neigh`; remove with `kubectl podtrace lab --cleanup`)\n", strings.Join(names, " "), l.Pods[0].NetNS)
			return
		}
		if terr := l.Teardown(); terr != nil {
			fmt.Fprintf(o.ErrOut, "podtrace: tearing down the lab: %v\n", terr)
			if err == nil {
				err = terr
			}
		}
	}()
	src, ok := l.Pod(o.From)
	if !ok {
		return fmt.Errorf("--from %q: the lab has pods %s", o.From, labPods(l))
	}
	s := localEnd{netns: src.NetNS, name: src.Name, ip: src.IP}
	var d localEnd
	if p, ok := l.Pod(o.To); ok {
		d = localEnd{netns: p.NetNS, name: p.Name, ip: p.IP}
	} else if e, err := resolveEnd(o.To); err == nil && e.netns == "" {
		d = e
	} else {
		return fmt.Errorf("--to %q: the lab has pods %s, or give an IP address", o.To, labPods(l))
	}
	if s.ip == d.ip {
		return fmt.Errorf("--from and --to are the same pod %s", o.From)
	}
	var nodes []string
	for _, n := range l.Nodes {
		nodes = append(nodes, n.NetNS)
	}
	plan := localPlan(&o.TraceOptions, s, d, "", nodes)
	// Display names without the lab's random prefix.
	for i := range plan.Agents {
		for _, n := range l.Nodes {
			if plan.Agents[i].Target == n.NetNS {
				plan.Agents[i].ID, plan.Agents[i].Name, plan.Agents[i].Node = n.Name, n.Name, n.Name
			}
		}
		for _, p := range l.Pods {
			if plan.Agents[i].Target == p.NetNS {
				plan.Agents[i].Node = p.Node
			}
		}
	}
	plan.Session.Src.Node = src.Node
	if p, ok := l.Pod(o.To); ok {
		plan.Session.Dst.Node = p.Node
	}
	plan.Session.Shape = labShape(l)
	return o.RunPlan(ctx, &local.Launcher{Binary: bin}, plan, nil)
}

func labShape(l *lab.Lab) string {
	switch l.Topology {
	case "bridge":
		return "bridge " + l.Nodes[0].Bridge
	case "vxlan":
		return "bridge + VXLAN overlay"
	case "routed":
		return "routed, proxy ARP"
	}
	return l.Topology
}

func labPods(l *lab.Lab) string {
	var n []string
	for _, p := range l.Pods {
		n = append(n, p.Name)
	}
	return strings.Join(n, ", ")
}

func (o *LabOptions) runCleanup() error {
	if os.Geteuid() != 0 {
		return errors.New("removing lab namespaces needs root")
	}
	removed, err := lab.Purge("")
	for _, r := range removed {
		fmt.Fprintf(o.Out, "removed %s\n", r)
	}
	if len(removed) == 0 && err == nil {
		fmt.Fprintln(o.Out, "no lab namespaces left behind")
	}
	return err
}
