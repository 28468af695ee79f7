package kdrop

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// layout is what the program needs to know of the running kernel, all of
// it read from the kernel's own BTF (/sys/kernel/btf/vmlinux): the offsets
// of the sk_buff, net_device and net fields it reads, and the names of the
// drop reasons (enum skb_drop_reason), so that one agent binary runs on any
// kernel that describes itself, and a reason is named as that kernel names
// it.
type layout struct {
	skbHead, skbNetworkHeader, skbDev uint32
	devIfindex, devName, devNet       uint32
	netInum                           uint32
	reasons                           map[uint32]string
}

// reasonPrefix is what every enumerator of enum skb_drop_reason starts
// with; the names reported drop it (SKB_DROP_REASON_NETFILTER_DROP is
// NETFILTER_DROP, as the kernel's own trace output prints it).
const reasonPrefix = "SKB_DROP_REASON_"

// errNoReason: the kernel's kfree_skb tracepoint carries no drop reason
// (before Linux 5.17).
var errNoReason = errors.New("this kernel's skb:kfree_skb tracepoint carries no drop reason (Linux 5.17 or later is needed)")

func readLayout(spec *btf.Spec) (*layout, error) {
	var l layout
	var err error
	field := func(typ, path string, size uint32) uint32 {
		if err != nil {
			return 0
		}
		var off uint32
		off, err = offsetOf(spec, typ, path, size)
		return off
	}
	l.skbHead = field("sk_buff", "head", 8)
	l.skbNetworkHeader = field("sk_buff", "network_header", 2)
	l.skbDev = field("sk_buff", "dev", 8)
	l.devIfindex = field("net_device", "ifindex", 4)
	l.devName = field("net_device", "name", 16)
	l.devNet = field("net_device", "nd_net", 8)
	l.netInum = field("net", "ns.inum", 4)
	if err != nil {
		return nil, err
	}
	if l.reasons, err = dropReasons(spec); err != nil {
		return nil, err
	}
	return &l, nil
}

// offsetOf is the byte offset of a member path ("ns.inum") in the named
// struct, looking through anonymous structs and unions as C does, and
// checking the member's size.
func offsetOf(spec *btf.Spec, typ, path string, size uint32) (uint32, error) {
	var s *btf.Struct
	if err := spec.TypeByName(typ, &s); err != nil {
		return 0, fmt.Errorf("kernel BTF: struct %s: %w", typ, err)
	}
	var t btf.Type = s
	var off uint32
	for name := range strings.SplitSeq(path, ".") {
		m, o, ok := member(t, name)
		if !ok {
			return 0, fmt.Errorf("kernel BTF: struct %s has no member %s", typ, path)
		}
		off += o
		t = m
	}
	got, err := btf.Sizeof(t)
	if err != nil {
		return 0, fmt.Errorf("kernel BTF: %s.%s: %w", typ, path, err)
	}
	if uint32(got) != size {
		return 0, fmt.Errorf("kernel BTF: %s.%s is %d bytes, not %d", typ, path, got, size)
	}
	return off, nil
}

// member finds a named member of a struct or union, also inside its
// anonymous members, and its byte offset.
func member(t btf.Type, name string) (btf.Type, uint32, bool) {
	var ms []btf.Member
	switch u := btf.UnderlyingType(t).(type) {
	case *btf.Struct:
		ms = u.Members
	case *btf.Union:
		ms = u.Members
	default:
		return nil, 0, false
	}
	for _, m := range ms {
		if m.BitfieldSize != 0 || m.Offset%8 != 0 {
			continue
		}
		if m.Name == name {
			return m.Type, m.Offset.Bytes(), true
		}
		if m.Name == "" {
			if mt, o, ok := member(m.Type, name); ok {
				return mt, m.Offset.Bytes() + o, true
			}
		}
	}
	return nil, 0, false
}

// dropReasons names the values of the reason argument of the kernel's
// kfree_skb tracepoint, from the type the tracepoint itself declares
// (btf_trace_kfree_skb: ctx, skb, location, reason, …).
func dropReasons(spec *btf.Spec) (map[uint32]string, error) {
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_kfree_skb", &td); err != nil {
		return nil, fmt.Errorf("kernel BTF: the skb:kfree_skb tracepoint: %w", err)
	}
	ptr, ok := btf.UnderlyingType(td.Type).(*btf.Pointer)
	if !ok {
		return nil, errors.New("kernel BTF: btf_trace_kfree_skb is not a function pointer")
	}
	proto, ok := btf.UnderlyingType(ptr.Target).(*btf.FuncProto)
	if !ok {
		return nil, errors.New("kernel BTF: btf_trace_kfree_skb is not a function pointer")
	}
	if len(proto.Params) < 4 {
		return nil, errNoReason
	}
	enum, ok := btf.UnderlyingType(proto.Params[3].Type).(*btf.Enum)
	if !ok || enum.Name != "skb_drop_reason" {
		return nil, errNoReason
	}
	names := make(map[uint32]string, len(enum.Values))
	for _, v := range enum.Values {
		n, ok := strings.CutPrefix(v.Name, reasonPrefix)
		if !ok || n == "MAX" {
			continue
		}
		names[uint32(v.Value)] = n
	}
	return names, nil
}
