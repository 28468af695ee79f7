package main

// The unprivileged agent (--unprivileged), as a pod's agent runs where
// PodSecurity baseline or restricted is enforced: uid and gid 65534, no
// capability, in a real network namespace of a lab on this kernel. It
// sends TCP, UDP and ICMP probes and reports their outcomes; what the
// destination's namespace received is read there by the test (accepted
// connection, datagram, raw ICMP socket), and what sockets the agent held
// from /proc.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/launch/local"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// inNS runs fn on a thread inside the namespace at path; sockets fn opens
// stay in that namespace.
func inNS(t *testing.T, path string, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		h, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// worldExecutable copies the agent binary where uid 65534 may run it (the
// build's temporary directory is 0700).
func worldExecutable(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "podtrace-unpriv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(agentBin)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "podtrace-agent")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// procStatus is a field of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

// socketKinds names the kinds of the sockets pid holds open, from the
// socket inodes of its descriptors and the kernel's tables of its network
// namespace (/proc/PID/net/{packet,netlink,tcp,udp,icmp,raw}).
func socketKinds(t *testing.T, pid int) []string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var kinds []string
	for _, table := range []string{"packet", "netlink", "raw", "raw6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			for _, f := range strings.Fields(l) {
				if inodes[f] {
					kinds = append(kinds, table)
				}
			}
		}
	}
	return kinds
}

// unprivRun is one run of the unprivileged agent in a namespace: its
// stream, and what /proc said of it while it ran.
type unprivRun struct {
	lines   []*wire.Envelope
	uid     string
	gid     string
	groups  string
	capEff  string
	capPrm  string
	sockets []string
	stderr  string
}

// runUnprivileged starts the agent through the local launcher as an
// unprivileged pod agent with probe, lets it probe, and stops it.
func runUnprivileged(t *testing.T, bin, nsPath string, probe *wire.ProbeSpec) unprivRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	a, err := (&local.Launcher{Binary: bin}).Start(ctx, launch.Spec{ID: "pod-a", Role: wire.RolePod, Name: "pod-a",
		Target: nsPath, Deadline: time.Minute, Probe: probe, Unprivileged: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Stop(ctx) }()
	lines := make(chan *wire.Envelope, 64)
	go func() {
		defer close(lines)
		r := wire.NewReader(a.Stream())
		for {
			e, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("stream: %v", err)
				}
				return
			}
			lines <- e
		}
	}()
	var run unprivRun
	next := func(what string) *wire.Envelope {
		select {
		case e, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended waiting for %s; agent: %s", what, a.Diagnostics())
			}
			run.lines = append(run.lines, e)
			return e
		case <-ctx.Done():
			t.Fatalf("no %s; agent: %s", what, a.Diagnostics())
		}
		return nil
	}
	if err := a.Send(wire.CmdStart); err != nil {
		t.Fatal(err)
	}
	hello := next("hello")
	if hello.Kind != wire.KindHello {
		t.Fatalf("first line %s, want hello", hello.Kind)
	}
	pid := hello.Hello.PID
	run.uid, run.gid, run.groups = procStatus(t, pid, "Uid"), procStatus(t, pid, "Gid"), procStatus(t, pid, "Groups")
	run.capEff, run.capPrm = procStatus(t, pid, "CapEff"), procStatus(t, pid, "CapPrm")
	if err := a.Send(wire.CmdProbe); err != nil {
		t.Fatal(err)
	}
	for {
		e := next("the probe's outcome")
		if e.Kind == wire.KindProbe && e.Probe.Done {
			break
		}
	}
	run.sockets = socketKinds(t, pid) // after the probe: every socket it opened was open once
	if err := a.Send(wire.CmdStop); err != nil {
		t.Fatal(err)
	}
	for e := next("bye"); e.Kind != wire.KindBye; e = next("bye") {
	}
	run.stderr = a.Diagnostics()
	return run
}

func (r unprivRun) outcome() *wire.Probe {
	for _, e := range r.lines {
		if e.Kind == wire.KindProbe && e.Probe.Event != "sent" {
			return e.Probe
		}
	}
	return nil
}

func (r unprivRun) errors() []string {
	var out []string
	for _, e := range r.lines {
		if e.Kind == wire.KindError {
			out = append(out, e.Error.Msg)
		}
	}
	return out
}

// checkUnprivileged checks what the kernel says of the agent: uid and
// gid 65534 (real, effective, saved, fs), no supplementary group, no
// capability, and no packet, netlink or raw socket; and that its hello
// says it captures nothing.
func checkUnprivileged(t *testing.T, r unprivRun) {
	t.Helper()
	uid := strconv.Itoa(wire.UnprivilegedUID)
	all := strings.Join([]string{uid, uid, uid, uid}, " ")
	if r.uid != all || r.gid != all || r.groups != "" {
		t.Errorf("agent ran as Uid %q Gid %q Groups %q; want %s, %s and none", r.uid, r.gid, r.groups, all, all)
	}
	if r.capEff != "0000000000000000" || r.capPrm != "0000000000000000" {
		t.Errorf("agent capabilities CapEff %s CapPrm %s; want none", r.capEff, r.capPrm)
	}
	if len(r.sockets) != 0 {
		t.Errorf("agent held %v sockets; want no packet, netlink or raw socket", r.sockets)
	}
	h := r.lines[0].Hello
	if !h.Unprivileged || len(h.Links) != 0 || h.Filter != "" || len(h.Caps) != 0 {
		t.Errorf("hello unprivileged %v, links %d, filter %q, capabilities %v; want unprivileged, none, none, none", h.Unprivileged, len(h.Links), h.Filter, h.Caps)
	}
}

func TestUnprivilegedAgentProbesTCPUDPAndICMPAsNobody(t *testing.T) {
	l := newLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	bin := worldExecutable(t)

	// pod-b: a TCP listener, a UDP echo, and a raw ICMP socket that reads
	// the echo requests arriving (the kernel answers them itself).
	var tl net.Listener
	var uc net.PacketConn
	var ic *icmp.PacketConn
	inNS(t, b.Path, func() error {
		var err error
		if tl, err = net.Listen("tcp4", b.IP+":0"); err != nil {
			return err
		}
		if uc, err = net.ListenPacket("udp4", b.IP+":0"); err != nil {
			return err
		}
		ic, err = icmp.ListenPacket("ip4:icmp", b.IP)
		return err
	})
	defer tl.Close()
	defer uc.Close()
	defer ic.Close()
	accepted := make(chan *net.TCPAddr, 4)
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			accepted <- c.RemoteAddr().(*net.TCPAddr)
			c.Close()
		}
	}()
	datagrams := make(chan *net.UDPAddr, 4)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			datagrams <- from.(*net.UDPAddr)
			_, _ = uc.WriteTo(buf[:n], from)
		}
	}()
	echoIDs := make(chan int, 4)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := ic.ReadFrom(buf)
			if err != nil {
				return
			}
			if m, err := icmp.ParseMessage(1, buf[:n]); err == nil && m.Type == ipv4.ICMPTypeEcho {
				echoIDs <- m.Body.(*icmp.Echo).ID
			}
		}
	}()
	tport, uport := tl.Addr().(*net.TCPAddr).Port, uc.LocalAddr().(*net.UDPAddr).Port
	spec := func(proto string, port, id int) *wire.ProbeSpec {
		return &wire.ProbeSpec{Proto: proto, Dst: b.IP, Port: port, Count: 1, Timeout: 2 * time.Second, ID: id}
	}

	t.Run("tcp to a listening port", func(t *testing.T) {
		r := runUnprivileged(t, bin, a.Path, spec("tcp", tport, 41001))
		checkUnprivileged(t, r)
		if o := r.outcome(); o == nil || o.Event != "reply" {
			t.Fatalf("outcome %+v; want reply (SYN-ACK)\n%v %s", o, r.errors(), r.stderr)
		}
		select {
		case from := <-accepted:
			if from.Port != 41001 || from.IP.String() != a.IP {
				t.Errorf("pod-b accepted a connection from %s; want %s:41001 (the probe's source port)", from, a.IP)
			}
		case <-time.After(hang):
			t.Fatal("pod-b accepted no connection")
		}
	})
	t.Run("tcp to a closed port", func(t *testing.T) {
		r := runUnprivileged(t, bin, a.Path, spec("tcp", 9, 41011))
		checkUnprivileged(t, r)
		if o := r.outcome(); o == nil || o.Event != "refused" {
			t.Fatalf("outcome %+v; want refused (RST)\n%v", o, r.errors())
		}
	})
	t.Run("udp to an echo", func(t *testing.T) {
		r := runUnprivileged(t, bin, a.Path, spec("udp", uport, 41021))
		checkUnprivileged(t, r)
		if o := r.outcome(); o == nil || o.Event != "reply" {
			t.Fatalf("outcome %+v; want reply\n%v", o, r.errors())
		}
		select {
		case from := <-datagrams:
			if from.Port != 41021 || from.IP.String() != a.IP {
				t.Errorf("pod-b received a datagram from %s; want %s:41021", from, a.IP)
			}
		case <-time.After(hang):
			t.Fatal("pod-b received no datagram")
		}
	})
	t.Run("icmp where ping sockets are not allowed", func(t *testing.T) {
		// A new network namespace's default: "1 0", nobody.
		if got := strings.Join(strings.Fields(nettest.In(t, a.NetNS, "sysctl", "-n", "net.ipv4.ping_group_range")), " "); got != "1 0" {
			t.Fatalf("pod-a's ping_group_range is %q; want the kernel's default 1 0", got)
		}
		r := runUnprivileged(t, bin, a.Path, spec("icmp", 0, 41031))
		checkUnprivileged(t, r)
		if o := r.outcome(); o == nil || o.Event != "error" {
			t.Fatalf("outcome %+v; want error", o)
		}
		msg := strings.Join(r.errors(), "\n")
		for _, want := range []string{"ping_group_range", `"1\t0"`, "gid 65534", "enable_unprivileged_icmp", "--proto tcp"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not say %q", msg, want)
			}
		}
		select {
		case id := <-echoIDs:
			t.Errorf("pod-b received an echo request (id %d) although the socket could not open", id)
		default:
		}
	})
	t.Run("icmp through a ping socket", func(t *testing.T) {
		// As containerd's enable_unprivileged_icmp sets it in each pod.
		nettest.In(t, a.NetNS, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
		r := runUnprivileged(t, bin, a.Path, spec("icmp", 0, 41041))
		checkUnprivileged(t, r)
		if o := r.outcome(); o == nil || o.Event != "reply" {
			t.Fatalf("outcome %+v; want reply\n%v", o, r.errors())
		}
		select {
		case id := <-echoIDs:
			if id != 41041 {
				t.Errorf("pod-b received echo id %d; want 41041 (the probe id, which the node agents' filter matches)", id)
			}
		case <-time.After(hang):
			t.Fatal("pod-b received no echo request")
		}
	})
}
