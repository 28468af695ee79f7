package agent

import (
	"net/netip"
	"slices"

	"github.com/podtrace/kubectl-podtrace/pkg/nftrace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// traceMatch is the probe a node agent traces through netfilter: the one
// it scopes its capture to, from the first to the second of its hosts.
func traceMatch(cfg Config) (*wire.ProbeSpec, nftrace.Match, bool) {
	m := cfg.Match
	if m == nil {
		m = cfg.Probe
	}
	if cfg.Role != wire.RoleNode || m == nil || len(cfg.Hosts) < 2 {
		return nil, nftrace.Match{}, false
	}
	src, err1 := netip.ParseAddr(cfg.Hosts[0])
	dst, err2 := netip.ParseAddr(cfg.Hosts[1])
	if err1 != nil || err2 != nil {
		return nil, nftrace.Match{}, false
	}
	nm := nftrace.Match{Proto: m.Proto, Src: src.Unmap(), Dst: dst.Unmap(), ICMPID: m.ID & 0xffff,
		FirstPort: wire.SourcePort(m, 1), LastPort: wire.SourcePort(m, max(m.Count, 1))}
	if m.NAT {
		nm.Dst = netip.Addr{} // translated on the way: any destination
	}
	return m, nm, true
}

// startNFTrace arms the netfilter tracing of the probe when asked, and
// says in the hello what it could do.
func startNFTrace(cfg Config) (*nftrace.Tracer, *wire.NFTraceStatus) {
	if !cfg.NFTrace {
		return nil, nil
	}
	_, m, ok := traceMatch(cfg)
	if !ok {
		return nil, nil // not a node agent of an active trace
	}
	st := &wire.NFTraceStatus{Legacy: nftrace.LegacyTables()}
	if !slices.Contains(effectiveCaps(), "NET_ADMIN") {
		st.Unavailable = "the agent has no NET_ADMIN capability"
		return nil, st
	}
	t, warnings, err := nftrace.Start(m, wire.MaxNFTrace)
	if err != nil {
		st.Unavailable = err.Error()
		return nil, st
	}
	st.Armed, st.Table = true, nftrace.TableName()
	if len(warnings) > 0 {
		st.Unavailable = warnings[0]
	}
	return t, st
}

// collectNFTrace ends the reading of trace events in the background; the
// result gives the probe's trace events once they are all read (none
// without a tracer). The tracer itself is closed by the caller.
func collectNFTrace(t *nftrace.Tracer) func() ([]nftrace.Event, nftrace.Stats) {
	if t == nil {
		return func() ([]nftrace.Event, nftrace.Stats) { return nil, nftrace.Stats{} }
	}
	done := make(chan struct{})
	var events []nftrace.Event
	var st nftrace.Stats
	go func() {
		defer close(done)
		// The tracing table goes with the tracer's Close, deferred
		// until after the bye.
		events, st = t.Drain()
	}()
	return func() ([]nftrace.Event, nftrace.Stats) {
		<-done
		return events, st
	}
}

// reportNFTrace writes the probe's trace events that collect returns.
func reportNFTrace(cfg Config, w *wire.Writer, collect func() ([]nftrace.Event, nftrace.Stats), names *ifNames) nftrace.Stats {
	events, st := collect()
	if len(events) == 0 {
		return st
	}
	spec, _, _ := traceMatch(cfg)
	for _, e := range events {
		n := &wire.NFTrace{TS: e.TS, Reply: e.Reply, ID: e.TraceID, Family: e.Family, Table: e.Table, Chain: e.Chain,
			Handle: e.Handle, Type: e.Type, Verdict: e.Verdict, Target: e.Target, Queue: e.Queue, Rule: e.Rule,
			IPTables: e.IPTables()}
		if e.ProbeSeq > 0 && spec != nil {
			seq := e.ProbeSeq
			if spec.Proto == "icmp" && seq > max(spec.Count, 1) {
				seq = 0 // an echo sequence beyond the run's: unnamed
			}
			if seq > 0 {
				n.Probe = wire.ProbeID(spec, seq)
			}
		}
		if e.Iif > 0 {
			n.Iif = names.get(e.Iif)
		}
		if e.Oif > 0 {
			n.Oif = names.get(e.Oif)
		}
		_ = w.Emit(n)
	}
	return st
}
