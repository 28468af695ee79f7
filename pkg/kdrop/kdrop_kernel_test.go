package kdrop

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// pair builds two namespaces joined by a veth: a (10.77.0.1) and b
// (10.77.0.2).
func pair(t *testing.T) (a, b string) {
	t.Helper()
	nettest.RequireRoot(t)
	p := nettest.Prefix() + "kd"
	a, b = nettest.NS(t, p+"a"), nettest.NS(t, p+"b")
	nettest.Veth(t, a, p+"y", b, p+"x")
	nettest.In(t, a, "ip", "link", "set", p+"y", "down", "name", "eth0")
	nettest.In(t, a, "ip", "link", "set", "eth0", "up")
	nettest.In(t, a, "ip", "addr", "add", "10.77.0.1/24", "dev", "eth0")
	nettest.In(t, b, "ip", "link", "set", p+"x", "down", "name", "eth0")
	nettest.In(t, b, "ip", "link", "set", "eth0", "up")
	nettest.In(t, b, "ip", "addr", "add", "10.77.0.2/24", "dev", "eth0")
	// No ARP in the way: each side knows the other's MAC once the
	// first exchange is done; a ping settles it.
	if _, err := nettest.Ping(t.Context(), a, "10.77.0.2"); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// sendUDP sends n datagrams from inside namespace ns, from source port
// sport to dst:dport.
func sendUDP(t *testing.T, ns, dst string, sport, dport, n int) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromName(ns)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		c, err := net.DialUDP("udp4", &net.UDPAddr{Port: sport}, &net.UDPAddr{IP: net.ParseIP(dst), Port: dport})
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		for range n {
			// A refused earlier datagram (ICMP port unreachable) is
			// reported on a later write: not this test's concern.
			_, _ = c.Write([]byte("podtrace"))
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// waitCount waits until the program counted at least n matches.
func waitMatched(t *testing.T, tr *Tracer, n uint64) Counts {
	t.Helper()
	for range 500 {
		c, err := tr.Counts()
		if err != nil {
			t.Fatal(err)
		}
		if c.Matched >= n {
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, _ := tr.Counts()
	t.Fatalf("the program matched %d drops, want %d (counts %+v)", c.Matched, n, c)
	return c
}

// A UDP probe dropped by an nftables rule in the destination's namespace
// is reported with the kernel's reason NETFILTER_DROP (the name the
// kernel's enum skb_drop_reason gives it: include/net/dropreason-core.h)
// and the function that dropped it, in the namespace and on the device
// where it happened. A busy flow dropped by the same rule, from another
// source port, is examined by the program and not reported: the kernel
// filter keeps the probe's packets only.
func TestProbeDroppedByNftablesIsNamedBusyFlowIsNot(t *testing.T) {
	a, b := pair(t)
	nettest.RequireTool(t, "nft", "apt-get install nftables")
	nettest.In(t, b, "nft", "add table inet kdtest; add chain inet kdtest in { type filter hook input priority 0; }; add rule inet kdtest in udp dport 9000 drop")
	inode := nsInode(t, b)

	tr, err := Open(Probe{Proto: "udp", Src: netip.MustParseAddr("10.77.0.1"), Dst: netip.MustParseAddr("10.77.0.2"), ID: 40000, Count: 2, Port: 9000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	t.Logf("program built, loaded and attached in %v", tr.LoadTime)

	const busy = 2000
	sendUDP(t, a, "10.77.0.2", 50000, 9000, busy) // the busy flow: same rule, not the probe
	sent := time.Now()
	sendUDP(t, a, "10.77.0.2", 40001, 9000, 1) // the second probe
	c := waitMatched(t, tr, 1)
	read := time.Now()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if c.Examined < busy+1 {
		t.Errorf("the program examined %d drops, want at least the busy flow's %d and the probe's", c.Examined, busy)
	}
	ev, extra := tr.Events()
	if len(ev) != 1 || extra != 0 || c.Matched != 1 || c.Lost != 0 {
		t.Fatalf("events %+v (+%d), counts %+v: want the probe's one drop", ev, extra, c)
	}
	d := ev[0]
	if d.Reason != "NETFILTER_DROP" {
		t.Errorf("reason %q, want NETFILTER_DROP", d.Reason)
	}
	kernelFunction(t, d.Location)
	if d.Proto != "udp" || d.Src.String() != "10.77.0.1" || d.Dst.String() != "10.77.0.2" || d.SrcPort != 40001 || d.DstPort != 9000 {
		t.Errorf("packet %+v, want udp 10.77.0.1:40001 → 10.77.0.2:9000", d)
	}
	if d.Iface != "eth0" || d.NetNS != inode {
		t.Errorf("on %q in netns %d, want eth0 in %s (%d)", d.Iface, d.NetNS, b, inode)
	}
	// CLOCK_REALTIME, as packet timestamps: the drop happened after the
	// probe was sent and before its event was read (boot time would be
	// years off).
	if d.TS.Before(sent) || d.TS.After(read) {
		t.Errorf("timestamp %v not between the send %v and the read %v", d.TS, sent, read)
	}
}

// A UDP probe to a port nobody listens on is dropped by the kernel with
// NO_SOCKET (__udp4_lib_rcv, after answering port unreachable).
func TestProbeToAClosedUDPPortIsNoSocket(t *testing.T) {
	a, _ := pair(t)
	tr, err := Open(Probe{Proto: "udp", Src: netip.MustParseAddr("10.77.0.1"), Dst: netip.MustParseAddr("10.77.0.2"), ID: 40000, Count: 1, Port: 9001}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	sendUDP(t, a, "10.77.0.2", 40000, 9001, 1)
	waitMatched(t, tr, 1)
	_ = tr.Close()
	ev, _ := tr.Events()
	if len(ev) != 1 || ev[0].Reason != "NO_SOCKET" {
		t.Fatalf("events %+v, want one NO_SOCKET", ev)
	}
	kernelFunction(t, ev[0].Location)
}

func nsInode(t *testing.T, ns string) uint32 {
	t.Helper()
	fi, err := os.Stat(nettest.Path(ns))
	if err != nil {
		t.Fatal(err)
	}
	return uint32(fi.Sys().(*syscall.Stat_t).Ino)
}

// kernelFunction fails the test unless name is a function of the running
// kernel, as /proc/kallsyms lists them to root.
func kernelFunction(t *testing.T, name string) {
	t.Helper()
	b, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == name && strings.ContainsAny(f[1], "tT") {
			t.Logf("dropped at %s", name)
			return
		}
	}
	t.Errorf("location %q is not a function in /proc/kallsyms", name)
}
