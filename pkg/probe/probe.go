// Package probe sends the active probes of a trace from inside the source
// pod's network namespace: ICMP echo, a TCP SYN (a connect) or a UDP
// datagram, each recognisable by its ICMP id/sequence or source port.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Marker starts the payload of every probe, so that a capture shows which
// frames a trace sent.
const Marker = "podtrace"

// Options say how the probes are sent.
type Options struct {
	// Unprivileged sends ICMP echo requests through an unprivileged ping
	// socket (SOCK_DGRAM, IPPROTO_ICMP) instead of a raw socket: no
	// capability is needed, but the process's group must be in the
	// namespace's net.ipv4.ping_group_range. TCP and UDP probes need no
	// privilege either way (their source ports are above 1023).
	Unprivileged bool
}

// Run sends spec.Count probes spec.Interval apart, reporting each one's
// "sent" and its outcome through emit. The last outcome has Done set.
func Run(ctx context.Context, spec *wire.ProbeSpec, emit func(*wire.Probe)) error {
	return RunWith(ctx, spec, Options{}, emit)
}

// RunWith is Run with options.
func RunWith(ctx context.Context, spec *wire.ProbeSpec, opt Options, emit func(*wire.Probe)) error {
	if spec.Count <= 0 {
		spec.Count = 1
	}
	if spec.Timeout <= 0 {
		spec.Timeout = time.Second
	}
	dst := net.ParseIP(spec.Dst)
	if dst == nil {
		return fmt.Errorf("probe destination %q is not an IP address", spec.Dst)
	}
	for seq := 1; seq <= spec.Count; seq++ {
		if seq > 1 && spec.Interval > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(spec.Interval):
			}
		}
		var out *wire.Probe
		var err error
		switch spec.Proto {
		case "icmp":
			out, err = icmpEcho(ctx, spec, dst, seq, opt.Unprivileged, emit)
		case "tcp":
			out, err = tcpConnect(ctx, spec, dst, seq, emit)
		case "udp":
			out, err = udpSend(ctx, spec, dst, seq, emit)
		default:
			return fmt.Errorf("unknown probe protocol %q (want icmp, tcp or udp)", spec.Proto)
		}
		if err != nil {
			return err
		}
		out.Done = seq == spec.Count
		emit(out)
	}
	return nil
}

func payload(spec *wire.ProbeSpec, seq int) []byte {
	return []byte(fmt.Sprintf("%s %d/%d", Marker, spec.ID, seq))
}

func icmpEcho(ctx context.Context, spec *wire.ProbeSpec, dst net.IP, seq int, unprivileged bool, emit func(*wire.Probe)) (*wire.Probe, error) {
	v6 := dst.To4() == nil
	network, proto := "ip4:icmp", 1
	var reqType, repType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if v6 {
		network, proto = "ip6:ipv6-icmp", 58
		reqType, repType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	id := spec.ID & 0xffff
	var c net.PacketConn
	var err error
	if unprivileged {
		c, err = pingSocket(v6, id)
	} else {
		c, err = icmp.ListenPacket(network, "")
		if err != nil {
			err = fmt.Errorf("open ICMP socket: %w (the agent needs CAP_NET_RAW)", err)
		}
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	to := net.Addr(&net.IPAddr{IP: dst})
	if unprivileged {
		to = &net.UDPAddr{IP: dst}
	}
	body := &icmp.Echo{ID: id, Seq: seq, Data: payload(spec, seq)}
	msg, _ := (&icmp.Message{Type: reqType, Body: body}).Marshal(nil)
	pid := wire.ProbeID(spec, seq)
	start := time.Now()
	if _, err := c.WriteTo(msg, to); err != nil {
		return outcomeOfError(pid, seq, start, err), nil
	}
	emit(&wire.Probe{ID: pid, Seq: seq, Event: "sent", TS: start, Detail: fmt.Sprintf("ICMP echo request id %d seq %d", id, seq)})
	deadline := start.Add(spec.Timeout)
	buf := make([]byte, 1500)
	for {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		_ = c.SetReadDeadline(minTime(deadline, time.Now().Add(100*time.Millisecond)))
		n, from, err := c.ReadFrom(buf)
		now := time.Now()
		if err != nil {
			if isTimeout(err) {
				if now.After(deadline) {
					return &wire.Probe{ID: pid, Seq: seq, Event: "timeout", TS: now, Detail: fmt.Sprintf("no reply within %s", spec.Timeout)}, nil
				}
				continue
			}
			if unprivileged && isUnreachable(err) {
				// A ping socket reports an ICMP error for its echo
				// as an error of the socket (the kernel matched the
				// quoted id).
				return outcomeOfError(pid, seq, start, err), nil
			}
			return nil, fmt.Errorf("read ICMP: %w", err)
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		switch b := m.Body.(type) {
		case *icmp.Echo:
			if m.Type == repType && b.ID == id && b.Seq == seq {
				return &wire.Probe{ID: pid, Seq: seq, Event: "reply", TS: now, RTT: now.Sub(start), Detail: "echo reply from " + from.String()}, nil
			}
		case *icmp.DstUnreach:
			if quotesEcho(b.Data, v6, id, seq) {
				return &wire.Probe{ID: pid, Seq: seq, Event: "unreachable", TS: now, Detail: fmt.Sprintf("destination unreachable (code %d) from %s", m.Code, from)}, nil
			}
		}
	}
}

// quotesEcho reports whether the quoted datagram in an ICMP error is our
// echo request.
func quotesEcho(quoted []byte, v6 bool, id, seq int) bool {
	hl := 40
	if !v6 {
		if len(quoted) < 20 {
			return false
		}
		hl = int(quoted[0]&0x0f) * 4
	}
	if len(quoted) < hl+8 {
		return false
	}
	e := quoted[hl:]
	return int(e[4])<<8|int(e[5]) == id && int(e[6])<<8|int(e[7]) == seq
}

func tcpConnect(ctx context.Context, spec *wire.ProbeSpec, dst net.IP, seq int, emit func(*wire.Probe)) (*wire.Probe, error) {
	pid := wire.ProbeID(spec, seq)
	sport := wire.SourcePort(spec, seq)
	d := net.Dialer{Timeout: spec.Timeout, LocalAddr: &net.TCPAddr{Port: sport}}
	start := time.Now()
	emit(&wire.Probe{ID: pid, Seq: seq, Event: "sent", TS: start, Detail: fmt.Sprintf("TCP SYN from port %d to port %d", sport, spec.Port)})
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(dst.String(), strconv.Itoa(spec.Port)))
	now := time.Now()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return outcomeOfError(pid, seq, start, err), nil
	}
	// Reset instead of a FIN handshake: the trace shows the SYN, SYN-ACK,
	// ACK and one RST, and no socket lingers in TIME_WAIT.
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
	return &wire.Probe{ID: pid, Seq: seq, Event: "reply", TS: now, RTT: now.Sub(start), Detail: fmt.Sprintf("port %d open (SYN-ACK)", spec.Port)}, nil
}

func udpSend(ctx context.Context, spec *wire.ProbeSpec, dst net.IP, seq int, emit func(*wire.Probe)) (*wire.Probe, error) {
	pid := wire.ProbeID(spec, seq)
	sport := wire.SourcePort(spec, seq)
	c, err := net.DialUDP("udp", &net.UDPAddr{Port: sport}, &net.UDPAddr{IP: dst, Port: spec.Port})
	if err != nil {
		return nil, fmt.Errorf("open UDP socket on port %d: %w", sport, err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write(payload(spec, seq)); err != nil {
		return outcomeOfError(pid, seq, start, err), nil
	}
	emit(&wire.Probe{ID: pid, Seq: seq, Event: "sent", TS: start, Detail: fmt.Sprintf("UDP datagram from port %d to port %d", sport, spec.Port)})
	deadline := start.Add(spec.Timeout)
	buf := make([]byte, 1500)
	for {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		_ = c.SetReadDeadline(minTime(deadline, time.Now().Add(100*time.Millisecond)))
		_, err := c.Read(buf)
		now := time.Now()
		if err == nil {
			return &wire.Probe{ID: pid, Seq: seq, Event: "reply", TS: now, RTT: now.Sub(start), Detail: "UDP reply"}, nil
		}
		if isTimeout(err) {
			if now.After(deadline) {
				// UDP has no handshake: silence is not loss. The merge
				// decides from what the hops saw.
				return &wire.Probe{ID: pid, Seq: seq, Event: "timeout", TS: now, Detail: fmt.Sprintf("no UDP reply within %s", spec.Timeout)}, nil
			}
			continue
		}
		return outcomeOfError(pid, seq, start, err), nil
	}
}

func outcomeOfError(pid string, seq int, start time.Time, err error) *wire.Probe {
	now := time.Now()
	p := &wire.Probe{ID: pid, Seq: seq, TS: now, RTT: now.Sub(start), Detail: err.Error()}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		p.Event = "refused"
		p.Detail = "connection refused (TCP RST or ICMP port unreachable)"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		p.Event = "unreachable"
	case isTimeout(err):
		p.Event = "timeout"
		p.RTT = 0
	default:
		p.Event = "error"
	}
	return p
}

func isUnreachable(err error) bool {
	return errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.ECONNREFUSED)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
