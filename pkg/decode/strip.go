package decode

import "github.com/gopacket/gopacket/layers"

// headerEnd is how many leading bytes of data are headers (see
// Decoder.HeadersOnly): through the last header s decoded, where s decoded
// data, or, when inner is set, the frame inside data's VXLAN or Geneve
// header that s decoded.
func headerEnd(data []byte, s *stack, inner []byte) int {
	end := -1
	for _, lt := range s.found {
		var n int
		ok := true
		switch lt {
		case layers.LayerTypeEthernet:
			n, ok = contentsEnd(data, s.eth.Contents)
		case layers.LayerTypeDot1Q:
			n, ok = contentsEnd(data, s.dot1q.Contents)
		case layers.LayerTypeARP:
			n, ok = contentsEnd(data, s.arp.Contents)
		case layers.LayerTypeIPv4:
			n, ok = contentsEnd(data, s.ip4.Contents)
		case layers.LayerTypeIPv6:
			n, ok = contentsEnd(data, s.ip6.Contents)
		case layers.LayerTypeTCP:
			n, ok = contentsEnd(data, s.tcp.Contents)
		case layers.LayerTypeUDP:
			n, ok = contentsEnd(data, s.udp.Contents)
		case layers.LayerTypeICMPv4:
			if n, ok = contentsEnd(data, s.icmp4.Contents); ok && isICMPv4Error(s.icmp4.TypeCode.Type()) {
				n += quotedHeaders(s.icmp4.Payload, false)
			}
		case layers.LayerTypeICMPv6:
			if n, ok = contentsEnd(data, s.icmp6.Contents); !ok {
				break
			}
			pl := s.icmp6.Payload // after type, code and checksum
			switch t := s.icmp6.TypeCode.Type(); {
			case t == layers.ICMPv6TypeEchoRequest || t == layers.ICMPv6TypeEchoReply:
				n += min(4, len(pl)) // identifier and sequence number
			case t < 128: // an error: 4 bytes (unused, MTU or pointer), then the quoted packet
				if len(pl) >= 4 {
					n += 4 + quotedHeaders(pl[4:], true)
				} else {
					n += len(pl)
				}
			default: // neighbour discovery, MLD, …: control messages, all header
				n += len(pl)
			}
		default:
			continue // gopacket.Payload: not a header
		}
		if !ok {
			break
		}
		end = n
	}
	if end < 0 {
		if inner != nil {
			if n, ok := offset(data, inner); ok {
				return n // the outer headers and the encapsulation header
			}
		}
		return min(len(data), 14) // not even Ethernet decoded: at most its header
	}
	return min(end, len(data))
}

// isICMPv4Error reports whether an ICMPv4 message of this type quotes the
// packet it is about (RFC 792: destination unreachable, source quench,
// redirect, time exceeded, parameter problem).
func isICMPv4Error(t uint8) bool {
	switch t {
	case layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4TypeSourceQuench, layers.ICMPv4TypeRedirect,
		layers.ICMPv4TypeTimeExceeded, layers.ICMPv4TypeParameterProblem:
		return true
	}
	return false
}

// quotedHeaders is how many bytes of q, the packet an ICMP error quotes,
// are its IP header and its transport header (TCP with options, UDP,
// ICMP): what the error says about which packet it is about.
func quotedHeaders(q []byte, v6 bool) int {
	var n int
	var proto layers.IPProtocol
	if v6 {
		if len(q) < 40 {
			return len(q)
		}
		n, proto = 40, layers.IPProtocol(q[6])
	} else {
		if len(q) < 20 || q[0]>>4 != 4 || q[0]&0x0f < 5 {
			return min(len(q), 20)
		}
		n, proto = int(q[0]&0x0f)*4, layers.IPProtocol(q[9])
	}
	switch proto {
	case layers.IPProtocolTCP:
		hl := 20
		if len(q) > n+12 && int(q[n+12]>>4)*4 > hl {
			hl = int(q[n+12]>>4) * 4
		}
		n += hl
	case layers.IPProtocolUDP, layers.IPProtocolICMPv4, layers.IPProtocolICMPv6:
		n += 8
	}
	return min(n, len(q))
}

// contentsEnd is where the bytes of a decoded layer end within data.
func contentsEnd(data, contents []byte) (int, bool) {
	off, ok := offset(data, contents)
	if !ok {
		return 0, false
	}
	return off + len(contents), off+len(contents) <= len(data)
}

// offset is where sub, a slice of data's bytes (gopacket's layers slice
// the bytes they decode, never copy them), starts within data; false when
// sub does not lie within data.
func offset(data, sub []byte) (int, bool) {
	if cap(data) == 0 {
		return 0, len(sub) == 0
	}
	off := cap(data) - cap(sub)
	if off < 0 || off > len(data) {
		return 0, false
	}
	if cap(sub) == 0 {
		return off, true // empty, at the end of data's array
	}
	return off, &data[:cap(data)][off] == &sub[:cap(sub)][0]
}
