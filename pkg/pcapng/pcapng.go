// Package pcapng writes a trace's frames as a pcapng file that Wireshark
// and tshark open: one interface description block per hop, named
// node/netns/iface, nanosecond timestamps, and the probe's frames
// annotated with a comment naming the hop and the fingerprint.
//
// The file is written here, block by block, after the pcapng
// specification (draft-ietf-opsawg-pcapng), rather than with a packet
// library's writer: the plugin runs briefly and often, and the packet
// libraries decode too, with tables they build at every start of the
// program. The format written is small: a section header, interface
// descriptions and enhanced packets, little endian.
package pcapng

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

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

// last is the last time a frame can carry: the file counts nanoseconds in
// 64 bits, and readers (Go's time among them) take the count as signed.
var last = time.Unix(0, math.MaxInt64)

// Write writes every packet observation of the trace that carries frame
// bytes, in time order, and returns how many it wrote. A frame timed
// before 1970 or after 2262 (a broken or hostile agent's) cannot be
// written: pcapng timestamps count nanoseconds from the Unix epoch, in 64
// bits.
func Write(w io.Writer, t *trace.Trace) (int, error) {
	obs := make([]*trace.Obs, 0, len(t.Packets))
	for _, o := range t.Packets {
		if len(o.P.Frame) > 0 && !o.P.TS.Before(epoch) && !o.P.TS.After(last) {
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
	iface := func(o *trace.Obs) ifaceInfo {
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
		return ifaceInfo{name: optString(HopName(o), maxOption), desc: optString(desc, maxOption),
			filter: optString(f, maxOption-1), os: "Linux", // the filter option starts with a byte of its own
			snaplen: snap}
	}
	bw := bufio.NewWriter(w)
	b := &blockWriter{w: bw}
	b.sectionHeader("kubectl-podtrace", runtime.GOARCH, runtime.GOOS)
	if len(order) == 0 {
		// A file with no frames still describes an interface, as
		// capture tools write it.
		b.interfaceDescription(ifaceInfo{name: "none"})
	}
	for _, o := range order {
		b.interfaceDescription(iface(o))
	}
	for _, o := range obs {
		b.enhancedPacket(uint32(ids[HopName(o)]), o.P.TS, o.P.Frame, max(o.P.Len, len(o.P.Frame)), optString(comments[o], maxOption))
	}
	if b.err != nil {
		return 0, b.err
	}
	return len(obs), bw.Flush()
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

// Block types, option codes and constants of the pcapng specification
// (draft-ietf-opsawg-pcapng: §4 blocks, §3.5 options).
const (
	blockSHB = 0x0A0D0D0A // Section Header Block (§4.1), the same in either byte order
	blockIDB = 1          // Interface Description Block (§4.2)
	blockEPB = 6          // Enhanced Packet Block (§4.3)

	byteOrderMagic = 0x1A2B3C4D // written in the file's byte order: little endian here

	optEndOfOpt = 0 // opt_endofopt: the end of a block's options
	optComment  = 1 // opt_comment, any block

	optSHBHardware = 2 // shb_hardware
	optSHBOS       = 3 // shb_os
	optSHBUserAppl = 4 // shb_userappl

	optIfName        = 2  // if_name
	optIfDescription = 3  // if_description
	optIfTSResol     = 9  // if_tsresol: 9, nanoseconds (10^-9 s)
	optIfFilter      = 11 // if_filter: a byte for the kind (0: libpcap's filter string), then the filter
	optIfOS          = 12 // if_os

	linkTypeEthernet = 1 // LINKTYPE_ETHERNET
)

// ifaceInfo is what an interface description block says of a hop.
type ifaceInfo struct {
	name, desc, filter, os string
	snaplen                uint32
}

// option is one option of a block: its code and its value, of at most
// maxOption bytes.
type option struct {
	code  uint16
	value []byte
}

// blockWriter writes pcapng blocks, little endian, and keeps the first
// error: after it, it writes nothing.
type blockWriter struct {
	w   io.Writer
	buf []byte
	err error
}

var le = binary.LittleEndian

// pad is how many zero bytes take n bytes to a multiple of 32 bits.
func pad(n int) int { return (4 - n&3) & 3 }

// zeros pads.
var zeros [3]byte

// optionsLen is the length of the options written: each padded to 32
// bits after its 4-byte header, then opt_endofopt; none, no bytes at all.
func optionsLen(opts []option) int {
	if len(opts) == 0 {
		return 0
	}
	n := 4
	for _, o := range opts {
		n += 4 + len(o.value) + pad(len(o.value))
	}
	return n
}

// block writes one block: its type and total length, the fixed part of
// its body, the frame data (padded to 32 bits), the options and the total
// length again (§3.1).
func (b *blockWriter) block(typ uint32, fixed, data []byte, opts []option) {
	if b.err != nil {
		return
	}
	total := 8 + len(fixed) + len(data) + pad(len(data)) + optionsLen(opts) + 4
	p := b.buf[:0]
	p = le.AppendUint32(p, typ)
	p = le.AppendUint32(p, uint32(total))
	p = append(p, fixed...)
	p = append(p, data...)
	p = append(p, zeros[:pad(len(data))]...)
	for _, o := range opts {
		p = le.AppendUint16(p, o.code)
		p = le.AppendUint16(p, uint16(len(o.value)))
		p = append(p, o.value...)
		p = append(p, zeros[:pad(len(o.value))]...)
	}
	if len(opts) > 0 {
		p = le.AppendUint16(p, optEndOfOpt)
		p = le.AppendUint16(p, 0)
	}
	p = le.AppendUint32(p, uint32(total))
	b.buf = p
	_, b.err = b.w.Write(p)
}

// sectionHeader writes the Section Header Block: version 1.0, section
// length unknown (-1), the application, hardware and operating system
// that wrote the file.
func (b *blockWriter) sectionHeader(application, hardware, os string) {
	fixed := make([]byte, 0, 16)
	fixed = le.AppendUint32(fixed, byteOrderMagic)
	fixed = le.AppendUint16(fixed, 1) // major version
	fixed = le.AppendUint16(fixed, 0) // minor version
	fixed = le.AppendUint64(fixed, math.MaxUint64)
	var opts []option
	opts = appendString(opts, optSHBUserAppl, application)
	opts = appendString(opts, optSHBHardware, hardware)
	opts = appendString(opts, optSHBOS, os)
	b.block(blockSHB, fixed, nil, opts)
}

// interfaceDescription writes an Interface Description Block for
// Ethernet frames; the interface's number is its place among them. Empty
// strings are left out; the timestamp resolution is always nanoseconds.
func (b *blockWriter) interfaceDescription(i ifaceInfo) {
	fixed := make([]byte, 0, 8)
	fixed = le.AppendUint16(fixed, linkTypeEthernet)
	fixed = le.AppendUint16(fixed, 0) // reserved
	fixed = le.AppendUint32(fixed, i.snaplen)
	var opts []option
	opts = appendString(opts, optIfName, i.name)
	opts = appendString(opts, optIfDescription, i.desc)
	if i.filter != "" {
		opts = append(opts, option{optIfFilter, append([]byte{0}, i.filter...)})
	}
	opts = appendString(opts, optIfOS, i.os)
	opts = append(opts, option{optIfTSResol, []byte{9}})
	b.block(blockIDB, fixed, nil, opts)
}

// enhancedPacket writes an Enhanced Packet Block: the frame captured on
// interface ifc at ts (nanoseconds since the epoch, as the interfaces
// declare), its length on the wire (at most what 32 bits hold) and, if
// not empty, a comment.
func (b *blockWriter) enhancedPacket(ifc uint32, ts time.Time, frame []byte, wireLen int, comment string) {
	ns := uint64(ts.UnixNano())
	wl := uint32(math.MaxUint32)
	if uint64(wireLen) < math.MaxUint32 {
		wl = uint32(wireLen)
	}
	fixed := make([]byte, 0, 20)
	fixed = le.AppendUint32(fixed, ifc)
	fixed = le.AppendUint32(fixed, uint32(ns>>32))
	fixed = le.AppendUint32(fixed, uint32(ns))
	fixed = le.AppendUint32(fixed, uint32(len(frame)))
	fixed = le.AppendUint32(fixed, wl)
	b.block(blockEPB, fixed, frame, appendString(nil, optComment, comment))
}

// appendString appends a string option unless s is empty.
func appendString(opts []option, code uint16, s string) []option {
	if s == "" {
		return opts
	}
	return append(opts, option{code, []byte(s)})
}
