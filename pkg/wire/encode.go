package wire

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendPacketLine appends the line encoding/json's Encoder writes for an
// Envelope that carries a Packet — byte for byte, newline included —
// without reflection: packet lines are most of a busy stream. It reports
// false, having appended nothing, when a timestamp is outside what RFC 3339
// can express; the caller then lets encoding/json produce its error.
//
// It must follow the struct tags in wire.go: TestPacketLineMatchesJSON
// fills every field of Packet by reflection and compares the two encoders,
// so a field added there without being added here fails it.
func appendPacketLine(b []byte, e *Envelope) ([]byte, bool) {
	p := e.Packet
	if !rfc3339OK(e.TS) || !rfc3339OK(p.TS) {
		return b, false
	}
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.V), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"agent":`...)
	b = appendJSONString(b, e.Agent)
	if e.Run != "" {
		b = append(b, `,"run":`...)
		b = appendJSONString(b, e.Run)
	}
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, e.Kind)
	b = append(b, `,"ts":`...)
	b = appendTime(b, e.TS)

	b = append(b, `,"packet":{"ts":`...)
	b = appendTime(b, p.TS)
	b = append(b, `,"ifindex":`...)
	b = strconv.AppendInt(b, int64(p.Index), 10)
	b = append(b, `,"iface":`...)
	b = appendJSONString(b, p.Iface)
	b = append(b, `,"dir":`...)
	b = appendJSONString(b, p.Dir)
	b = append(b, `,"pkttype":`...)
	b = appendJSONString(b, p.PktType)
	b = append(b, `,"len":`...)
	b = strconv.AppendInt(b, int64(p.Len), 10)
	b = append(b, `,"caplen":`...)
	b = strconv.AppendInt(b, int64(p.CapLen), 10)
	if len(p.Frame) > 0 {
		b = append(b, `,"frame":"`...)
		b = base64.StdEncoding.AppendEncode(b, p.Frame)
		b = append(b, '"')
	}
	if x := p.Eth; x != nil {
		b = append(b, `,"eth":{"src":`...)
		b = appendJSONString(b, x.Src)
		b = append(b, `,"dst":`...)
		b = appendJSONString(b, x.Dst)
		b = append(b, `,"type":`...)
		b = appendJSONString(b, x.Type)
		b = appendIntField(b, `,"vlan":`, int64(x.VLAN), true)
		b = append(b, '}')
	}
	if x := p.ARP; x != nil {
		b = append(b, `,"arp":{"op":`...)
		b = appendJSONString(b, x.Op)
		b = append(b, `,"senderMac":`...)
		b = appendJSONString(b, x.SenderMAC)
		b = append(b, `,"senderIp":`...)
		b = appendJSONString(b, x.SenderIP)
		b = append(b, `,"targetMac":`...)
		b = appendJSONString(b, x.TargetMAC)
		b = append(b, `,"targetIp":`...)
		b = appendJSONString(b, x.TargetIP)
		b = append(b, '}')
	}
	if x := p.IP; x != nil {
		b = append(b, `,"ip":{"version":`...)
		b = strconv.AppendInt(b, int64(x.Version), 10)
		b = append(b, `,"src":`...)
		b = appendJSONString(b, x.Src)
		b = append(b, `,"dst":`...)
		b = appendJSONString(b, x.Dst)
		b = appendIntField(b, `,"id":`, int64(x.ID), true)
		b = appendIntField(b, `,"ttl":`, int64(x.TTL), false)
		b = append(b, `,"proto":`...)
		b = appendJSONString(b, x.Proto)
		b = appendIntField(b, `,"len":`, int64(x.Len), false)
		b = append(b, '}')
	}
	if x := p.Encap; x != nil {
		b = append(b, `,"encap":{"type":`...)
		b = appendJSONString(b, x.Type)
		b = appendIntField(b, `,"vni":`, int64(x.VNI), false)
		b = append(b, `,"outerSrc":`...)
		b = appendJSONString(b, x.OuterSrc)
		b = append(b, `,"outerDst":`...)
		b = appendJSONString(b, x.OuterDst)
		b = appendIntField(b, `,"srcPort":`, int64(x.SrcPort), false)
		b = appendIntField(b, `,"dstPort":`, int64(x.DstPort), false)
		b = appendStringField(b, `,"outerMac":`, x.OuterMAC, true)
		b = append(b, '}')
	}
	if x := p.L4; x != nil {
		b = append(b, `,"l4":{"proto":`...)
		b = appendJSONString(b, x.Proto)
		b = appendIntField(b, `,"sport":`, int64(x.SrcPort), true)
		b = appendIntField(b, `,"dport":`, int64(x.DstPort), true)
		b = appendStringField(b, `,"flags":`, x.Flags, true)
		b = appendIntField(b, `,"seq":`, int64(x.Seq), true)
		b = appendIntField(b, `,"ack":`, int64(x.Ack), true)
		b = appendStringField(b, `,"type":`, x.Type, true)
		b = appendIntField(b, `,"code":`, int64(x.Code), true)
		b = appendIntField(b, `,"icmpId":`, int64(x.ICMPID), true)
		b = appendIntField(b, `,"icmpSeq":`, int64(x.ICMPSeq), true)
		b = appendStringField(b, `,"target":`, x.Target, true)
		b = appendIntField(b, `,"payloadLen":`, int64(x.Payload), false)
		b = append(b, '}')
	}
	b = append(b, `,"summary":`...)
	b = appendJSONString(b, p.Summary)
	b = appendStringField(b, `,"fp":`, p.FP, true)
	b = appendStringField(b, `,"probe":`, p.ProbeID, true)
	if p.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	return append(b, "}}\n"...), true
}

func appendIntField(b []byte, key string, v int64, omitEmpty bool) []byte {
	if omitEmpty && v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), v, 10)
}

func appendStringField(b []byte, key, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

// rfc3339OK reports whether time.Time.MarshalJSON accepts t: a four-digit
// year and a zone offset under 24 hours.
func rfc3339OK(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	return off > -24*3600 && off < 24*3600
}

// appendTime appends t as time.Time.MarshalJSON does.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendJSONString appends s quoted as encoding/json does with HTML
// escaping on (the Encoder's default): <, > and & as \u00XX, invalid UTF-8
// as \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
