package render

import (
	"encoding/json"
	"io"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// JSON line kinds (docs/trace-json.md).
type jsonTrace struct {
	Kind  string       `json:"kind"` // "trace"
	Src   jsonEndpoint `json:"src"`
	Dst   jsonEndpoint `json:"dst"`
	Shape string       `json:"shape,omitempty"`
	// Discovered is the CNI shape recognised from the agents' topology.
	Discovered string                `json:"discoveredShape,omitempty"`
	Clocks     []trace.ClockEstimate `json:"clocks,omitempty"`
	Probe      *wire.ProbeSpec       `json:"probe,omitempty"`
	Service    *jsonService          `json:"service,omitempty"`
	Mode       *trace.Mode           `json:"mode,omitempty"`
	Start      time.Time             `json:"start"`
	ArmedNs    time.Duration         `json:"armedNs,omitempty"`
	Agents     []jsonAgent           `json:"agents"`
	Notes      []string              `json:"notes,omitempty"`
	// ReceivedBytes is what the plugin received from every agent (in a
	// cluster, through the API server).
	ReceivedBytes int64 `json:"receivedBytes"`
}

// jsonEndpoint is one end of the trace, or an endpoint of a Service.
type jsonEndpoint struct {
	Name  string `json:"name"`  // "default/pod-a", "pod-a"
	Short string `json:"short"` // "pod-a"
	IP    string `json:"ip"`
	Node  string `json:"node"`
	Agent string `json:"agent"` // id of the agent in its namespace, "" if none
}

func endpoint(e trace.Endpoint) jsonEndpoint {
	return jsonEndpoint{Name: e.Name, Short: e.Short, IP: e.IP, Node: e.Node, Agent: e.Agent}
}

// jsonService is the Service (or translated address) a trace probed.
type jsonService struct {
	Name        string         `json:"name"` // "e2e/svc-local", or the address
	IP          string         `json:"ip"`
	Port        int            `json:"port,omitempty"`
	Endpoints   []jsonEndpoint `json:"endpoints,omitempty"`
	NoEndpoints string         `json:"noEndpoints,omitempty"`
}

func service(s *trace.Service) *jsonService {
	if s == nil {
		return nil
	}
	j := &jsonService{Name: s.Name, IP: s.IP, Port: s.Port, NoEndpoints: s.NoEndpoints}
	for _, e := range s.Endpoints {
		j.Endpoints = append(j.Endpoints, endpoint(e))
	}
	return j
}

type jsonAgent struct {
	ID    string       `json:"id"`
	Name  string       `json:"name"`
	Role  string       `json:"role"`
	Node  string       `json:"node,omitempty"`
	Bye   string       `json:"bye,omitempty"`
	Gaps  uint64       `json:"gaps,omitempty"`
	Stats []wire.Stats `json:"stats,omitempty"`
	// KernelDrops is the state of the agent's kernel drop reasons
	// program, when it was asked for one.
	KernelDrops *wire.KernelDrops `json:"kernelDrops,omitempty"`
	// ReceivedBytes is what the plugin received of the agent's stream.
	ReceivedBytes int64    `json:"receivedBytes"`
	Cut           *jsonCut `json:"cut,omitempty"`
}

// jsonCut is what was cut from one agent's stream, and by whom.
type jsonCut struct {
	Budget        int64  `json:"budget,omitempty"`       // the agent's byte budget, bytes per second
	BudgetLines   uint64 `json:"budgetLines,omitempty"`  // packet and change lines its budget cut
	BudgetBytes   uint64 `json:"budgetBytes,omitempty"`  // their encoded size
	PluginLines   uint64 `json:"pluginLines,omitempty"`  // lines the plugin set aside over its per-agent bound
	PluginBytes   uint64 `json:"pluginBytes,omitempty"`  //
	InvalidLines  uint64 `json:"invalidLines,omitempty"` // lines skipped as invalid
	InvalidReason string `json:"invalidReason,omitempty"`
	ClampedLines  uint64 `json:"clampedLines,omitempty"` // lines whose over-long fields were shortened
}

func agentCut(a *trace.AgentInfo) *jsonCut {
	budget, lines, bytes := a.BudgetCut()
	in := a.Intake
	if lines == 0 && in.CutLines == 0 && in.Invalid == 0 && in.Clamped == 0 {
		return nil
	}
	return &jsonCut{Budget: budget, BudgetLines: lines, BudgetBytes: bytes, PluginLines: in.CutLines, PluginBytes: in.CutBytes,
		InvalidLines: in.Invalid, InvalidReason: in.InvalidReason, ClampedLines: in.Clamped}
}

type jsonHop struct {
	Kind         string        `json:"kind"` // "hop"
	TNs          time.Duration `json:"tNs"`  // since the trace start
	Journey      int           `json:"journey"`
	Toward       bool          `json:"toward"`            // from src toward dst
	Probe        string        `json:"probeId,omitempty"` // e.g. "icmp/1"
	Reply        bool          `json:"reply,omitempty"`
	Agent        string        `json:"agent"`
	Iface        string        `json:"iface"`
	Role         string        `json:"role"`
	Owner        string        `json:"owner,omitempty"`
	DeltaNs      *int64        `json:"deltaNs,omitempty"`
	NonMonotonic bool          `json:"nonMonotonic,omitempty"`
	CrossClock   bool          `json:"crossClock,omitempty"` // deltaNs spans two nodes' clocks: a one-way estimate
	Note         string        `json:"note,omitempty"`
	Packet       *wire.Packet  `json:"packet"`
}

// jsonNAT is a translation of the probe, shown before the first hop of
// a journey past it.
type jsonNAT struct {
	Kind     string        `json:"kind"` // "nat"
	TNs      time.Duration `json:"tNs"`
	Journey  int           `json:"journey"`
	Toward   bool          `json:"toward"`
	Reverse  bool          `json:"reverse,omitempty"` // the reply translated back
	Agent    string        `json:"agent"`
	Endpoint string        `json:"endpoint"`
	Family   string        `json:"family,omitempty"`
	Text     string        `json:"text"`
	NAT      *wire.NAT     `json:"nat"`
}

type jsonChange struct {
	Kind       string        `json:"kind"`       // "change"
	TNs        time.Duration `json:"tNs"`        // when it happened (its causing frame), since the trace start
	NotifiedNs time.Duration `json:"notifiedNs"` // when the agent was notified, since the trace start
	Agent      string        `json:"agent"`
	Text       string        `json:"text"`
	Change     *wire.Change  `json:"change"`
}

type jsonSummarized struct {
	Kind       string          `json:"kind"`    // "summarized"
	Agent      string          `json:"agent"`   // who counted frames instead of streaming them
	SinceNs    time.Duration   `json:"sinceNs"` // when it switched, since the trace start
	UntilNs    time.Duration   `json:"untilNs"` // end of its last summary
	Above      int             `json:"above"`   // the threshold crossed, frames per second
	IntervalNs time.Duration   `json:"intervalNs,omitempty"`
	Summaries  int             `json:"summaries"`
	Packets    uint64          `json:"packets"` // frames summarized
	Bytes      uint64          `json:"bytes"`
	Drops      uint64          `json:"drops"`   // kernel drops meanwhile
	Records    int             `json:"records"` // flow records (flow × interface × direction) listed
	Other      *wire.FlowOther `json:"other,omitempty"`
}

type jsonFlow struct {
	Kind string `json:"kind"` // "flow"
	wire.Flow
	Toward  bool          `json:"toward"`
	Packets uint64        `json:"packets"` // the most frames any hop counted
	Bytes   uint64        `json:"bytes"`
	FirstNs time.Duration `json:"firstNs"`
	Hops    []jsonFlowHop `json:"hops"`
}

type jsonFlowHop struct {
	Agent   string        `json:"agent"`
	Iface   string        `json:"iface"`
	Role    string        `json:"role"`
	Owner   string        `json:"owner,omitempty"`
	Dir     string        `json:"dir"`
	Encap   string        `json:"encap,omitempty"`
	VNI     uint32        `json:"vni,omitempty"`
	Packets uint64        `json:"packets"`
	Bytes   uint64        `json:"bytes"`
	FirstNs time.Duration `json:"firstNs"`
	LastNs  time.Duration `json:"lastNs"`
	Flags   string        `json:"tcpFlags,omitempty"`
}

type jsonPath struct {
	Kind string      `json:"kind"` // "path"
	Hops []trace.Hop `json:"hops"`
}

type jsonWarning struct {
	Kind string `json:"kind"` // "warning"
	Msg  string `json:"msg"`
}

type jsonVerdict struct {
	Kind string `json:"kind"` // "verdict"
	trace.Verdict
	Policy *trace.PolicyEvidence `json:"policy,omitempty"`
}

// JSON writes the trace as JSON lines, one event per line; the last line
// is the verdict.
func JSON(w io.Writer, t *trace.Trace, h Header) error {
	enc := json.NewEncoder(safeJSONWriter{w})
	if err := enc.Encode(traceHead(t, h)); err != nil {
		return err
	}
	for _, it := range t.Items {
		if ch := it.Change; ch != nil {
			if err := enc.Encode(jsonChange{Kind: "change", TNs: ch.At.Sub(t.Start), NotifiedNs: ch.C.TS.Sub(t.Start), Agent: ch.Agent.Name, Text: ch.Text, Change: ch.C}); err != nil {
				return err
			}
			continue
		}
		j := it.Journey
		for k, o := range j.Obs {
			if j.NAT != nil && k == j.NATAt {
				n := jsonNAT{Kind: "nat", TNs: j.NAT.At.Sub(t.Start), Journey: j.ID, Toward: j.Toward, Reverse: !j.Toward,
					Agent: j.NAT.Agent.Name, Endpoint: j.NAT.Endpoint, Family: j.NAT.Family, Text: j.NAT.Text, NAT: j.NAT.N}
				if !j.Toward {
					n.TNs, n.Text = o.P.TS.Sub(t.Start), j.NAT.ReverseText()
				}
				if err := enc.Encode(n); err != nil {
					return err
				}
			}
			p := *o.P
			p.Frame = nil
			hop := jsonHop{Kind: "hop", TNs: o.P.TS.Sub(t.Start), Journey: j.ID, Toward: j.Toward, Probe: j.Probe, Reply: j.IsReply,
				Agent: o.Agent.Name, Iface: o.If.Name, Role: o.If.Role, Owner: o.If.Owner, NonMonotonic: o.NonMonotonic, CrossClock: o.CrossClock, Note: o.Note, Packet: &p}
			if o.HasDelta {
				d := int64(o.Delta)
				hop.DeltaNs = &d
			}
			if err := enc.Encode(hop); err != nil {
				return err
			}
		}
	}
	for _, sm := range t.Summarized {
		x := jsonSummarized{Kind: "summarized", Agent: sm.Agent.Name, SinceNs: sm.Since.Sub(t.Start), UntilNs: sm.Until.Sub(t.Start),
			Above: sm.Above, IntervalNs: sm.Interval, Summaries: sm.Summaries, Packets: sm.Packets, Bytes: sm.Bytes, Drops: sm.Drops, Records: sm.Records}
		if sm.OtherPackets > 0 {
			x.Other = &wire.FlowOther{Records: sm.OtherRecords, Packets: sm.OtherPackets, Bytes: sm.OtherBytes, Untracked: sm.Untracked}
		}
		if err := enc.Encode(x); err != nil {
			return err
		}
	}
	for _, f := range t.Flows {
		x := jsonFlow{Kind: "flow", Flow: f.Flow, Toward: f.Toward, Packets: f.Packets, Bytes: f.Bytes, FirstNs: f.First.Sub(t.Start)}
		for _, h := range f.Hops {
			x.Hops = append(x.Hops, jsonFlowHop{Agent: h.Agent.Name, Iface: h.If.Name, Role: h.If.Role, Owner: h.If.Owner, Dir: h.Dir,
				Encap: h.Encap, VNI: h.VNI, Packets: h.Packets, Bytes: h.Bytes, FirstNs: h.First.Sub(t.Start), LastNs: h.Last.Sub(t.Start), Flags: h.Flags})
		}
		if err := enc.Encode(x); err != nil {
			return err
		}
	}
	if len(t.Path) > 0 {
		if err := enc.Encode(jsonPath{Kind: "path", Hops: t.Path}); err != nil {
			return err
		}
	}
	for _, m := range t.Warnings {
		if err := enc.Encode(jsonWarning{Kind: "warning", Msg: m}); err != nil {
			return err
		}
	}
	if h.Explain != nil {
		if err := enc.Encode(jsonExplain{Kind: "explain", Narrative: h.Explain}); err != nil {
			return err
		}
	}
	return enc.Encode(jsonVerdict{Kind: "verdict", Verdict: t.Verdict, Policy: t.Policy})
}

// traceHead is the first line of the JSON output: the session and its agents.
func traceHead(t *trace.Trace, h Header) jsonTrace {
	head := jsonTrace{Kind: "trace", Src: endpoint(t.Session.Src), Dst: endpoint(t.Session.Dst), Shape: t.Session.Shape, Probe: t.Session.Probe,
		Start: t.Start, ArmedNs: h.Armed, Notes: h.Notes, Discovered: t.Shape, Clocks: t.Clocks, Service: service(t.Session.Service), Mode: t.Session.Mode}
	for _, a := range t.Agents {
		ja := jsonAgent{ID: a.ID, Name: a.Name, Role: a.Role, Node: a.Node, Bye: a.Bye, Gaps: a.Gaps, Stats: a.Stats,
			ReceivedBytes: a.Intake.ReceivedBytes, Cut: agentCut(a)}
		if a.Hello != nil {
			ja.KernelDrops = a.Hello.KernelDrops
		}
		head.Agents = append(head.Agents, ja)
		head.ReceivedBytes += a.Intake.ReceivedBytes
	}
	return head
}

// safeJSONWriter passes each encoded line through safeJSON: no rune that
// could act on a terminal reaches one that shows the JSON as it is.
type safeJSONWriter struct{ w io.Writer }

func (s safeJSONWriter) Write(p []byte) (int, error) {
	if _, err := s.w.Write(safeJSON(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}
