package agent

import (
	"errors"
	"net/netip"
	"sync"

	"github.com/podtrace/kubectl-podtrace/pkg/kdrop"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// kernelDrops follows the kernel's drops of the probe's packets
// (--kernel-drops): it loads the kdrop program for the probe the agent
// is scoped to and writes a drop line per dropped packet, at most
// wire.MaxDrops. Without a probe, or where the kernel or the agent's
// privileges do not allow it, the hello says why and the trace goes on.
type kernelDrops struct {
	t       *kdrop.Tracer
	spec    *wire.ProbeSpec
	mu      sync.Mutex
	written uint64
}

// armKernelDrops loads and attaches the program; emit writes a line
// (lines come from the program's reader goroutine).
func armKernelDrops(cfg Config, emit func(any)) (*kernelDrops, *wire.KernelDrops) {
	m := cfg.Match
	if m == nil {
		m = cfg.Probe
	}
	if m == nil || len(cfg.Hosts) < 2 {
		return nil, &wire.KernelDrops{Why: "kernel drops follow a probe: this agent has none"}
	}
	src, err1 := netip.ParseAddr(cfg.Hosts[0])
	dst, err2 := netip.ParseAddr(cfg.Hosts[1])
	if err := errors.Join(err1, err2); err != nil {
		return nil, &wire.KernelDrops{Why: err.Error()}
	}
	k := &kernelDrops{spec: m}
	t, err := kdrop.Open(kdrop.Probe{Proto: m.Proto, Src: src, Dst: dst, ID: m.ID, Count: m.Count, Port: m.Port, NAT: m.NAT},
		func(d kdrop.Drop) {
			k.mu.Lock()
			if k.written >= wire.MaxDrops {
				k.mu.Unlock()
				return
			}
			k.written++
			k.mu.Unlock()
			emit(k.line(d))
		})
	if err != nil {
		return nil, &wire.KernelDrops{Why: err.Error()}
	}
	k.t = t
	return k, &wire.KernelDrops{Armed: true, LoadTime: t.LoadTime}
}

// line is the stream's drop line for one drop.
func (k *kernelDrops) line(d kdrop.Drop) *wire.Drop {
	l := &wire.Drop{TS: d.TS, Reason: d.Reason, Code: d.Code, Location: d.Location,
		Index: d.Ifindex, Iface: d.Iface, NetNSID: uint64(d.NetNS),
		Proto: d.Proto, Src: d.Src.String(), Dst: d.Dst.String(), SrcPort: d.SrcPort, DstPort: d.DstPort,
		ICMPID: d.ICMPID, ICMPSeq: d.ICMPSeq}
	switch {
	case d.Proto == "icmp":
		switch d.ICMPType {
		case 8:
			l.Type = "echo-request"
		case 0:
			l.Type = "echo-reply"
		}
		if d.ICMPSeq >= 1 {
			l.Probe = wire.ProbeID(k.spec, d.ICMPSeq)
		}
	default:
		// The probe's own port: the source of a request, the
		// destination of an answer.
		for _, p := range []int{d.SrcPort, d.DstPort} {
			if seq := p - k.spec.ID + 1; seq >= 1 && seq <= max(k.spec.Count, 1) {
				l.Probe = wire.ProbeID(k.spec, seq)
				break
			}
		}
	}
	return l
}

// close detaches the program after reading what it wrote, and returns
// its counters for the stats line.
func (k *kernelDrops) close() *wire.DropCounts {
	if k == nil {
		return nil
	}
	_ = k.t.Close()
	c, err := k.t.Counts()
	if err != nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return &wire.DropCounts{Examined: c.Examined, Matched: c.Matched, Lost: c.Lost, Written: k.written}
}
