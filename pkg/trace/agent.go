package trace

import (
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// AgentInfo is what the trace knows of one agent.
type AgentInfo struct {
	ID      string
	Role    string
	Name    string // display name: "pod-a", "node-1"
	Node    string
	Hello   *wire.Hello
	Gaps    uint64
	Stats   []wire.Stats
	Bye     string
	Errors  []string
	NetNSID uint64
	// Before and After are the agent's topology snapshots (routes,
	// neighbours, FDB), when it sent them.
	Before, After *wire.Topology
	// Summaries are the per-flow counts it wrote instead of packet lines
	// once its capture went over its threshold.
	Summaries []*wire.Summary
	// NFTrace are the netfilter trace events of the probe it reported, in
	// the kernel's order.
	NFTrace []*wire.NFTrace
	// Intake is what the plugin received of the agent's stream and set
	// aside.
	Intake Intake
}

// ClockDomain is the clock an agent's timestamps come from: its node's.
func (a *AgentInfo) ClockDomain() string {
	if a.Node != "" {
		return a.Node
	}
	if a.Hello != nil {
		return a.Hello.Hostname
	}
	return ""
}

// BudgetCut sums what the agent's own byte budget cut, from its stats
// lines: the budget (bytes per second), lines and bytes.
func (a *AgentInfo) BudgetCut() (budget int64, lines, bytes uint64) {
	for _, s := range a.Stats {
		budget = max(budget, s.Budget)
		lines += s.CutLines
		bytes += s.CutBytes
	}
	return budget, lines, bytes
}

// Intake is what the plugin received of one agent's stream and what it
// set aside: lines over its per-agent bound (so that its memory stays
// bounded whatever the traffic), lines it could not accept (too long, not
// JSON, a kind without its payload), and lines whose fields it shortened.
type Intake struct {
	ReceivedBytes int64  `json:"receivedBytes"`
	CutLines      uint64 `json:"cutLines,omitempty"` // set aside over the plugin's bound
	CutBytes      uint64 `json:"cutBytes,omitempty"`
	Invalid       uint64 `json:"invalidLines,omitempty"`
	InvalidReason string `json:"invalidReason,omitempty"` // why the first was invalid
	Clamped       uint64 `json:"clampedLines,omitempty"`
}

// IfKey names one interface of one agent's namespace.
type IfKey struct {
	Agent string
	Index int
}

// Iface is an interface as the trace sees it: where it is and what role it
// plays on the path.
type Iface struct {
	Key    IfKey
	Name   string
	Kind   string
	MAC    string
	Agent  *AgentInfo
	Role   string // "pod eth0", "host veth", "bridge", "overlay", "node NIC", "loopback", "device"
	Owner  string // the pod whose host veth this is, when known
	Master *Iface
	Link   wire.Link
}

// Label is how a trace names the interface: "cni0", "veth9f8e7d6c (pod-b)".
func (i *Iface) Label() string {
	if i.Owner != "" && i.Role == "host veth" {
		return i.Name + " (" + i.Owner + ")"
	}
	return i.Name
}

// Place is the agent and the interface: "node1 veth9f8e7d6c (pod-b)".
func (i *Iface) Place() string { return i.Agent.Name + " " + i.Label() }
