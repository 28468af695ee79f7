// Package trace holds what a trace is made of: the session it answers, the
// agents and interfaces that observed it, each packet's journey across the
// hops that saw it, the path it was expected to take, the clocks, the
// summarized flows and the verdict. The engine that builds a trace is in
// its subpackages, each with one job, and all of them stand on these
// types (this package imports none of them):
//
//	graph    where a packet can go: the interfaces of all agents, what joins
//	         them, the route walk, the expected path between the endpoints
//	match    where it went: journeys by fingerprint, their hops in path
//	         order, deltas, clocks across nodes, changes, summaries
//	verdict  what happened: each probe judged on the path, and why in words
//	merge    the entry point: a session's streams in, one trace out
//
// Renderers (text, JSON lines, pcapng) read these types only.
package trace

import (
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Endpoint is one end of the trace. The JSON names are a recording's
// (session.json); one written before they were set has Go's names, which
// encoding/json matches too (case-insensitively).
type Endpoint struct {
	Name  string `json:"name"`  // "default/pod-a", "pod-a"
	Short string `json:"short"` // "pod-a"
	IP    string `json:"ip"`
	Node  string `json:"node"`
	Agent string `json:"agent"` // id of the agent in its namespace, "" if none
}

// Session is what the plugin asked for.
type Session struct {
	Src   Endpoint        `json:"src"`
	Dst   Endpoint        `json:"dst"`
	Probe *wire.ProbeSpec `json:"probe"` // nil when passive
	Shape string          `json:"shape"` // what the launcher knows of the CNI ("bridge cni0")
	// Service is set when the probe goes to a virtual address that a
	// node translates (a Service's ClusterIP): Dst is then the endpoint
	// the translation chose (the merge sets it from the conntrack
	// evidence).
	Service *Service `json:"service,omitempty"`
	// Mode is how the agents were placed (cluster traces), and why.
	Mode *Mode `json:"mode,omitempty"`
}

// Mode is the placement of a cluster trace's agents and why it was taken:
// "ephemeral" (capture agents in the pods), "unprivileged" (an
// unprivileged agent in the source pod sends the probe and captures
// nothing: the pods' own eth0 is not captured, the node agents see the
// host side of their veths), "node" (node agents only, passive).
type Mode struct {
	Name string `json:"name"`
	Why  string `json:"why,omitempty"`
}

// Stream is the observations of one agent, in the order it wrote them.
type Stream struct {
	Agent   string
	Display string // "pod-a", "node-1"
	Gaps    uint64
	Lines   []*wire.Envelope
	// Intake is what the plugin received of the stream and set aside.
	Intake Intake
}

// Obs is one packet observed at one interface, placed in its journey.
type Obs struct {
	Agent        *AgentInfo
	If           *Iface
	P            *wire.Packet
	Rank         int
	Delta        time.Duration // since the previous hop of the journey
	HasDelta     bool
	NonMonotonic bool // earlier than the previous hop: the kernel stamped it so
	// CrossClock: the previous hop is on another node, whose clock may
	// differ: the delta is a one-way estimate (after the offset estimated
	// from request/reply pairs was applied, when it was significant).
	CrossClock bool
	Note       string
	// Translated: the packet as a node's DNAT rewrote it (toward the
	// endpoint), or the endpoint's answer before it was translated back;
	// NAT is that translation.
	Translated bool
	NAT        *NATHop
}

// Journey is one packet across the hops that saw it.
type Journey struct {
	ID      int
	FP      string
	Toward  bool   // moving from Src toward Dst
	Probe   string // probe id, if this packet is (the answer to) a probe
	IsReply bool   // answer to a probe
	Obs     []*Obs
	First   time.Time
	// NAT is the translation the packet went through, shown before
	// Obs[NATAt] (its first copy past the translation).
	NAT   *NATHop
	NATAt int
}

// At is the journey's observation at an interface, nil when it was not
// seen there (or the journey is nil).
func (j *Journey) At(i *Iface) *Obs {
	if j == nil {
		return nil
	}
	for _, o := range j.Obs {
		if o.If == i {
			return o
		}
	}
	return nil
}

// Change is a neighbour, FDB or link change that matters for the flow.
type Change struct {
	Agent *AgentInfo
	C     *wire.Change
	Text  string
	// At is when the change happened: the kernel timestamp of the frame
	// that caused it (the first frame from a MAC entering a bridge port,
	// the ARP frame that taught a neighbour entry) when one was observed,
	// else when the agent was notified (C.TS), which is later.
	At    time.Time
	Cause *Obs
}

// Item is one entry of the trace in display order: a journey or a change.
type Item struct {
	TS      time.Time
	Journey *Journey
	Change  *Change
}

// Hop is one interface of the expected path and what happened there.
type Hop struct {
	Place  string `json:"place"` // agent display name
	Label  string `json:"label"`
	Role   string `json:"role"`             // pod eth0, host veth, bridge, overlay, node NIC, peer node NIC, …
	Detail string `json:"detail,omitempty"` // "vni 1, VTEP 192.168.50.1", "proxy ARP", the route taken
	Status string `json:"status"`           // "seen", "not seen", "not observable"
}

// Verdict is the trace's conclusion.
type Verdict struct {
	Result    string        `json:"result"` // delivered, lost, partial, arp-unanswered, observed
	Answer    string        `json:"answer,omitempty"`
	RTT       time.Duration `json:"rttNs,omitempty"`
	Sent      int           `json:"sent"`
	Delivered int           `json:"delivered"`
	Answered  int           `json:"answered"`
	LastSeen  string        `json:"lastSeen,omitempty"`
	NotSeen   string        `json:"notSeen,omitempty"`
	Reason    string        `json:"reason,omitempty"`
	Path      string        `json:"path,omitempty"`
	Evidence  []string      `json:"evidence,omitempty"`
	// Drop names what dropped the lost probe, when a node traced it
	// through netfilter (or why the rule could not be named).
	Drop *Drop `json:"drop,omitempty"`
	// Kernel is the kernel's own word on the loss: a node agent with
	// --kernel-drops saw the kernel drop the probe, and why.
	Kernel *KernelDrop `json:"kernel,omitempty"`
}

// Drop is the live evidence of who dropped the probe: the netfilter rule
// (or chain policy) whose verdict a node agent traced.
type Drop struct {
	By      string `json:"by"`              // "netfilter"
	Agent   string `json:"agent,omitempty"` // the node agent that traced it
	Backend string `json:"backend,omitempty"`
	Family  string `json:"family,omitempty"`
	Table   string `json:"table,omitempty"`
	Chain   string `json:"chain,omitempty"`
	Handle  uint64 `json:"handle,omitempty"`
	// Rule is the rule as nft lists it; empty for a chain's policy.
	Rule string `json:"rule,omitempty"`
	// Verdict is drop, reject (a drop that answered the source), or
	// queue (handed to a userspace program that never returned it).
	Verdict string `json:"verdict,omitempty"`
	Queue   int    `json:"queue,omitempty"`
	Policy  bool   `json:"policy,omitempty"` // the base chain's policy, not a rule
	Reply   bool   `json:"reply,omitempty"`  // the answer was dropped, not the probe
	// Text says it in one line, as the text verdict prints it.
	Text string `json:"text"`
	// Unavailable: no rule could be named, and why (tracing off, legacy
	// iptables, no nf_tables); Text then says so.
	Unavailable bool `json:"unavailable,omitempty"`
}

// KernelDrop is a drop of one of the probe's packets as the kernel
// reported it to an agent (wire.Drop), placed.
type KernelDrop struct {
	Place string `json:"place"` // the agent that reported it ("node-1")
	// Netns names the namespace it happened in: an agent's ("pod-b",
	// "node-1"), else "netns inode N" on the reporting agent's host.
	Netns    string `json:"netns,omitempty"`
	Iface    string `json:"iface,omitempty"`
	Probe    string `json:"probe,omitempty"`
	Reply    bool   `json:"reply,omitempty"` // the answer was dropped, not the probe
	Reason   string `json:"reason"`          // the kernel's name: NETFILTER_DROP, NO_SOCKET, …
	Code     uint32 `json:"code"`
	Location string `json:"location,omitempty"` // the kernel function that dropped it
	Text     string `json:"text"`               // one line, as the text output prints it
}

// Trace is the merged result.
type Trace struct {
	Session  Session
	Agents   []*AgentInfo
	Start    time.Time
	Journeys []*Journey
	Changes  []*Change
	Items    []Item
	Path     []Hop
	Probes   []*wire.Probe
	Verdict  Verdict
	Warnings []string
	Packets  []*Obs // every packet observation, in time order
	// Shape is the CNI shape recognised from the agents' topology along
	// the path ("bridge cni0 + VXLAN overlay flannel.1 vni 1", "routed
	// (proxy ARP, Calico-style)"), "" when nothing was recognised.
	Shape string
	// Clocks are the offsets estimated between the nodes' clocks.
	Clocks []ClockEstimate
	// Summarized lists the agents that counted frames per flow instead of
	// streaming them, and Flows those counts per flow and hop, the
	// busiest flow first.
	Summarized []*Summarized
	Flows      []*Flow
	// NATs are the translations of the probe the node agents reported
	// (conntrack), each a hop of the trace.
	NATs []*NATHop
	// Policy is the NetworkPolicy model's statement for the probe, nil
	// when it was not consulted.
	Policy *PolicyEvidence
}
