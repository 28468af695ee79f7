package nftrace

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// parseTrace decodes one NFT_MSG_TRACE message (after the netlink header):
// the nfgenmsg (the chain's family), then NFTA_TRACE_* attributes.
func parseTrace(b []byte) (*Event, error) {
	if len(b) < 4 {
		return nil, errors.New("short trace message")
	}
	e := &Event{Family: familyNames[nftables.TableFamily(b[0])]}
	if e.Family == "" {
		e.Family = strconv.Itoa(int(b[0]))
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	var typ, policy uint32
	var nh, th []byte
	havePolicy := false
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_TRACE_TABLE:
			e.Table = ad.String()
		case unix.NFTA_TRACE_CHAIN:
			e.Chain = ad.String()
		case unix.NFTA_TRACE_RULE_HANDLE:
			e.Handle = ad.Uint64()
		case unix.NFTA_TRACE_TYPE:
			typ = ad.Uint32()
		case unix.NFTA_TRACE_VERDICT:
			ad.Nested(func(nd *netlink.AttributeDecoder) error {
				nd.ByteOrder = binary.BigEndian
				for nd.Next() {
					switch nd.Type() {
					case unix.NFTA_VERDICT_CODE:
						e.Verdict, e.Queue = verdictName(nd.Uint32())
					case unix.NFTA_VERDICT_CHAIN:
						e.Target = nd.String()
					}
				}
				return nil
			})
		case unix.NFTA_TRACE_ID:
			e.TraceID = ad.Uint32()
		case unix.NFTA_TRACE_NETWORK_HEADER:
			nh = ad.Bytes()
		case unix.NFTA_TRACE_TRANSPORT_HEADER:
			th = ad.Bytes()
		case unix.NFTA_TRACE_IIF:
			e.Iif = int(ad.Uint32())
		case unix.NFTA_TRACE_OIF:
			e.Oif = int(ad.Uint32())
		case unix.NFTA_TRACE_POLICY:
			policy, havePolicy = ad.Uint32(), true
		}
	}
	if err := ad.Err(); err != nil {
		return nil, err
	}
	switch typ {
	case unix.NFT_TRACETYPE_RULE:
		e.Type = "rule"
	case unix.NFT_TRACETYPE_RETURN:
		e.Type = "return"
	case unix.NFT_TRACETYPE_POLICY:
		e.Type = "policy"
		if havePolicy {
			e.Verdict, e.Queue = verdictName(policy)
		}
	default:
		e.Type = "unspec"
	}
	parseHeaders(e, nh, th)
	return e, nil
}

// verdictName names a verdict code (NF_* and NFT_* of the kernel's
// headers); a queue verdict carries its queue number in the upper 16 bits.
func verdictName(code uint32) (string, int) {
	switch int32(code) {
	case -1:
		return "continue", 0
	case -2:
		return "break", 0
	case -3:
		return "jump", 0
	case -4:
		return "goto", 0
	case -5:
		return "return", 0
	}
	switch code & 0xff {
	case 0:
		return "drop", 0
	case 1:
		return "accept", 0
	case 2:
		return "stolen", 0
	case 3:
		return "queue", int(code >> 16)
	case 4:
		return "repeat", 0
	case 5:
		return "stop", 0
	}
	return strconv.FormatUint(uint64(code), 10), 0
}

// parseHeaders reads addresses and ports from the network and transport
// headers the kernel copied into the event.
func parseHeaders(e *Event, nh, th []byte) {
	var proto byte
	switch {
	case len(nh) >= 20 && nh[0]>>4 == 4:
		e.Src = netip.AddrFrom4([4]byte(nh[12:16]))
		e.Dst = netip.AddrFrom4([4]byte(nh[16:20]))
		proto = nh[9]
	case len(nh) >= 40 && nh[0]>>4 == 6:
		e.Src = netip.AddrFrom16([16]byte(nh[8:24]))
		e.Dst = netip.AddrFrom16([16]byte(nh[24:40]))
		proto = nh[6] // without extension headers: the transport protocol
	default:
		return
	}
	switch proto {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP:
		e.L4 = map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp"}[proto]
		if len(th) >= 4 {
			e.SPort = int(binary.BigEndian.Uint16(th[0:2]))
			e.DPort = int(binary.BigEndian.Uint16(th[2:4]))
		}
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		e.L4 = "icmp"
		if proto == unix.IPPROTO_ICMPV6 {
			e.L4 = "icmp6"
		}
		if len(th) >= 8 {
			e.ICMPType = int(th[0])
			e.ICMPID = int(binary.BigEndian.Uint16(th[4:6]))
			e.ICMPSeq = int(binary.BigEndian.Uint16(th[6:8]))
		}
	default:
		e.L4 = strconv.Itoa(int(proto))
	}
}
