// Package pcapng writes a trace's frames as a pcapng file that Wireshark
// and tshark open: one interface description block per hop, named
// node/netns/iface, nanosecond timestamps, and the probe's frames
// annotated with a comment naming the hop and the fingerprint.
package pcapng

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
)

// HopName is the interface name a hop gets in the file: node/netns/iface,
// where netns is the pod for a pod's namespace and "root" for the node's
// own ("-" for an unknown node). A slash inside a part ("default/pod-a")
// becomes ":" so that the name always has three parts.
func HopName(o *trace.Obs) string {
	node := o.Agent.Node
	if node == "" {
		node = "-"
	}
	ns := "root"
	if o.Agent.Role == "pod" || o.Agent.Node == "" {
		ns = o.Agent.Name
	}
	clean := strings.NewReplacer("/", ":").Replace
	return clean(node) + "/" + clean(ns) + "/" + clean(o.If.Name)
}

// epoch is where pcapng timestamps start: they count up from it, unsigned.
var epoch = time.Unix(0, 0)

// Write writes every packet observation of the trace that carries frame
// bytes, in time order, and returns how many it wrote. A frame timed
// before 1970 (a broken or hostile agent's) cannot be written: pcapng
// timestamps count from the Unix epoch.
func Write(w io.Writer, t *trace.Trace) (int, error) {
	obs := make([]*trace.Obs, 0, len(t.Packets))
	for _, o := range t.Packets {
		if len(o.P.Frame) > 0 && !o.P.TS.Before(epoch) {
			obs = append(obs, o)
		}
	}
	sort.SliceStable(obs, func(i, j int) bool { return obs[i].P.TS.Before(obs[j].P.TS) })
	comments := map[*trace.Obs]string{}
	for _, j := range t.Journeys {
		for k, o := range j.Obs {
			if j.Probe != "" {
				role := "request"
				if j.IsReply {
					role = "answer"
				}
				comments[o] = fmt.Sprintf("podtrace probe %s %s · hop %d/%d %s (%s) · fp %s", j.Probe, role, k+1, len(j.Obs), HopName(o), o.If.Role, j.FP)
			}
		}
	}
	// Interfaces in order of first appearance.
	ids := map[string]int{}
	var order []*trace.Obs
	for _, o := range obs {
		n := HopName(o)
		if _, ok := ids[n]; !ok {
			ids[n] = len(order)
			order = append(order, o)
		}
	}
	iface := func(o *trace.Obs) pcapgo.NgInterface {
		desc := o.If.Role
		if o.If.Owner != "" {
			desc += " of " + o.If.Owner
		}
		snap := uint32(0)
		if o.Agent.Hello != nil {
			snap = uint32(o.Agent.Hello.Snaplen)
		}
		f := ""
		if o.Agent.Hello != nil {
			f = o.Agent.Hello.Filter
		}
		return pcapgo.NgInterface{Name: optString(HopName(o), maxOption), Description: optString(desc, maxOption),
			Filter: optString(f, maxOption-1), OS: "Linux", // the filter option starts with a byte of its own
			LinkType: layers.LinkTypeEthernet, TimestampResolution: 9, SnapLength: snap}
	}
	first := pcapgo.NgInterface{Name: "none", LinkType: layers.LinkTypeEthernet, TimestampResolution: 9}
	if len(order) > 0 {
		first = iface(order[0])
	}
	opts := pcapgo.DefaultNgWriterOptions
	opts.SectionInfo.Application = "kubectl-podtrace"
	nw, err := pcapgo.NewNgWriterInterface(w, first, opts)
	if err != nil {
		return 0, err
	}
	for _, o := range order[min(1, len(order)):] {
		if _, err := nw.AddInterface(iface(o)); err != nil {
			return 0, err
		}
	}
	for _, o := range obs {
		ci := gopacket.CaptureInfo{Timestamp: o.P.TS, CaptureLength: len(o.P.Frame), Length: max(o.P.Len, len(o.P.Frame)), InterfaceIndex: ids[HopName(o)]}
		if c, ok := comments[o]; ok {
			// gopacket's writer has no packet options: flush it and write
			// this enhanced packet block with its comment ourselves.
			if err := nw.Flush(); err != nil {
				return 0, err
			}
			if err := writeEPB(w, ci, o.P.Frame, c); err != nil {
				return 0, err
			}
			continue
		}
		if err := nw.WritePacket(ci, o.P.Frame); err != nil {
			return 0, err
		}
	}
	return len(obs), nw.Flush()
}

// maxOption is the longest option value a block holds: its length is 16
// bits (pcapng §3.5), and with the padding to 32 bits it must stay so
// for readers (gopacket's adds them in 16 bits).
const maxOption = 0xfffc

// optString cuts s to at most n bytes, at a rune boundary.
func optString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// writeEPB writes an Enhanced Packet Block (pcapng §4.3) with an
// opt_comment, timestamps in nanoseconds as the interface blocks declare.
func writeEPB(w io.Writer, ci gopacket.CaptureInfo, data []byte, comment string) error {
	pad := func(n int) int { return (4 - n&3) & 3 }
	comment = optString(comment, maxOption)
	optLen := 4 + len(comment) + pad(len(comment)) + 4 // comment + opt_endofopt
	total := 28 + len(data) + pad(len(data)) + optLen + 4
	b := make([]byte, 0, total)
	le := binary.LittleEndian
	b = le.AppendUint32(b, 6) // EPB
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint32(b, uint32(ci.InterfaceIndex))
	ts := uint64(ci.Timestamp.UnixNano())
	b = le.AppendUint32(b, uint32(ts>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(ci.CaptureLength))
	b = le.AppendUint32(b, uint32(ci.Length))
	b = append(b, data...)
	b = append(b, make([]byte, pad(len(data)))...)
	b = le.AppendUint16(b, 1) // opt_comment
	b = le.AppendUint16(b, uint16(len(comment)))
	b = append(b, comment...)
	b = append(b, make([]byte, pad(len(comment)))...)
	b = le.AppendUint32(b, 0) // opt_endofopt
	b = le.AppendUint32(b, uint32(total))
	_, err := w.Write(b)
	return err
}
