package netsnap

import (
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ctEvent lays out a conntrack event message as ctnetlink_fill_info does:
// nlmsghdr, nfgenmsg, then CTA_TUPLE_ORIG → CTA_TUPLE_IP → source,
// destination.
func ctEvent(src, dst netip.Addr) []byte {
	fam, srcAttr, dstAttr := uint8(unix.AF_INET), nl.CTA_IP_V4_SRC, nl.CTA_IP_V4_DST
	if src.Is6() {
		fam, srcAttr, dstAttr = unix.AF_INET6, nl.CTA_IP_V6_SRC, nl.CTA_IP_V6_DST
	}
	tuple := nl.NewRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_ORIG, nil)
	ip := tuple.AddRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_IP, nil)
	ip.AddRtAttr(srcAttr, src.AsSlice())
	ip.AddRtAttr(dstAttr, dst.AsSlice())
	msg := make([]byte, unix.SizeofNlMsghdr)
	msg = append(msg, (&nl.Nfgenmsg{NfgenFamily: fam, Version: unix.NFNETLINK_V0}).Serialize()...)
	return append(msg, tuple.Serialize()...)
}

// The kernel filter of a conntrack watch passes the events whose original
// source is the watched address, and none of the other family's (on a
// dual-stack node they would otherwise all reach user space and fill the
// watch's bounded event list).
func TestConntrackSourceFilter(t *testing.T) {
	a4, b4 := netip.MustParseAddr("10.244.0.2"), netip.MustParseAddr("10.244.0.3")
	a6, b6 := netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::3")
	otherLayout := ctEvent(a4, b4)
	otherLayout[30], otherLayout[31] = 0x7f, 0x7f // not a source address attribute: user space decides
	for _, c := range []struct {
		name  string
		watch netip.Addr
		msg   []byte
		pass  bool
	}{
		{"IPv4 event from the source", a4, ctEvent(a4, b4), true},
		{"IPv4 event from another source", a4, ctEvent(b4, a4), false},
		{"IPv6 event, IPv4 watch", a4, ctEvent(a6, b6), false},
		{"IPv4 message of another layout", a4, otherLayout, true},
		{"IPv6 event from the source", a6, ctEvent(a6, b6), true},
		{"IPv6 event from another source", a6, ctEvent(b6, a6), false},
		{"IPv6 event differing in the last word only", a6, ctEvent(netip.MustParseAddr("fd00::4"), b6), false},
		{"IPv4 event, IPv6 watch", a6, ctEvent(a4, b4), false},
	} {
		vm, err := bpf.NewVM(sourceFilterProgram(c.watch))
		if err != nil {
			t.Fatal(err)
		}
		n, err := vm.Run(c.msg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := n != 0; got != c.pass {
			t.Errorf("%s: passes %v, want %v", c.name, got, c.pass)
		}
	}
}
