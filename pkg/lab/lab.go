// Package lab builds throw-away Kubernetes-like node topologies out of
// network namespaces on this machine, for `kubectl podtrace lab` and for
// integration tests: node namespaces hold what a node's root namespace
// would (bridge, host veths, overlay devices), pod namespaces hold a pod's
// eth0. The machine's own root namespace is never touched.
//
// Namespaces are named "<prefix>-node1", "<prefix>-pod-a", ... and
// bind-mounted under /var/run/netns like `ip netns add` does, so that
// `ip netns exec` works on them while a lab is kept.
//
// Topologies:
//
//   - "bridge": one node with bridge cni0 (10.244.0.1/24) and pods pod-a,
//     pod-b, pod-c (10.244.0.2-4) on veth pairs, like the bridge CNI.
//   - "vxlan": two nodes joined by an underlay veth (eth0, 192.168.50.1/24
//     and .2), each with cni0 (10.244.1.1/24, 10.244.2.1/24) and a VXLAN
//     device flannel.1 (VNI 1, port 8472, learning off) with the static
//     routes, neighbours and FDB entries of flannel's vxlan backend;
//     pod-a and pod-c on node1, pod-b and pod-d on node2.
//   - "routed": one node without a bridge, Calico style: host veths
//     "cali" + 11 hex with proxy_arp, a /32 route per pod, pods routing
//     via 169.254.1.1 onlink; pod-a, pod-b, pod-c (10.244.0.2-4). The
//     node's uplink eth0 (192.168.50.1/24) leads to a namespace
//     "<prefix>-net" holding its default gateway (.254): proxy ARP only
//     answers for addresses routed out of another interface.
//
// Every lab namespace has IPv6 disabled so that no router solicitations,
// DAD or MLD reports warm the bridges' FDBs or add noise to a trace: caches
// are cold until the first packet a user sends.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Topologies Build knows, the first is the default.
var Topologies = []string{"bridge", "vxlan", "routed"}

// Options configure Build.
type Options struct {
	// Prefix is the unique name prefix of the lab's namespaces (e.g.
	// "pt1a2b"). Build picks "pt" + 4 random hex digits if empty.
	Prefix string
	// Topology is "bridge" (default), "vxlan" or "routed".
	Topology string
	// Progress receives one line per step; may be nil.
	Progress io.Writer
}

// Node is a node namespace.
type Node struct {
	Name   string // "node1"
	NetNS  string // namespace name, "<prefix>-node1"
	Path   string // /var/run/netns/<NetNS>
	Bridge string // pod bridge, "" when pods are routed
	Uplink string // underlay interface to other nodes, "" when single-node
}

// Pod is a pod namespace.
type Pod struct {
	Name          string // "pod-a"
	NetNS         string // namespace name, "<prefix>-pod-a"
	Path          string // /var/run/netns/<NetNS>
	IP            string // eth0 address, without prefix length
	MAC           string // eth0 MAC
	Node          string // Node.Name it is attached to
	HostVeth      string // node side of its veth pair
	HostVethIndex int    // ifindex of HostVeth in the node namespace
}

// Lab is a built topology. Its methods are safe for concurrent use.
type Lab struct {
	Prefix   string
	Topology string
	Nodes    []Node
	Pods     []Pod

	mu   sync.Mutex
	made []string // namespaces this lab created, in order
	lock *os.File // held while the lab exists in this process (see inUse)
}

// Pod returns the pod of that name ("pod-a").
func (l *Lab) Pod(name string) (Pod, bool) {
	for _, p := range l.Pods {
		if p.Name == name {
			return p, true
		}
	}
	return Pod{}, false
}

// Node returns the node of that name ("node1").
func (l *Lab) Node(name string) (Node, bool) {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

var prefixRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,23}$`)

// NewPrefix returns a fresh random lab prefix, "pt" + 4 hex digits.
func NewPrefix() string {
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "pt" + hex.EncodeToString(b)
}

// failAt, when set (by tests), makes Build fail after the named step.
var failAt string

// Build creates the topology. On any error, including ctx being done, it
// removes everything it made and returns an error naming the step that
// failed. The caller owns the result and must call Teardown.
func Build(ctx context.Context, o Options) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: building network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
	}
	if o.Prefix == "" {
		o.Prefix = NewPrefix()
	}
	if !prefixRE.MatchString(o.Prefix) {
		return nil, fmt.Errorf("lab: invalid prefix %q: use up to 24 lower-case letters, digits and dashes", o.Prefix)
	}
	if o.Topology == "" {
		o.Topology = "bridge"
	}
	var build func(*builder) error
	switch o.Topology {
	case "bridge":
		build = (*builder).bridge
	case "vxlan":
		build = (*builder).vxlan
	case "routed":
		build = (*builder).routed
	default:
		return nil, fmt.Errorf("lab: unknown topology %q (want one of %s)", o.Topology, strings.Join(Topologies, ", "))
	}
	if err := ensureNetNSDir(); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	lock, err := holdLock(o.Prefix)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	// Capacity so that *Node pointers taken while building stay valid.
	l := &Lab{Prefix: o.Prefix, Topology: o.Topology, Nodes: make([]Node, 0, 4), lock: lock}
	b := &builder{ctx: ctx, lab: l, progress: o.Progress}
	if err := build(b); err != nil {
		if terr := l.Teardown(); terr != nil {
			return nil, fmt.Errorf("lab %s: %w (and cleaning up: %v)", l.Prefix, err, terr)
		}
		return nil, fmt.Errorf("lab %s: %w", l.Prefix, err)
	}
	if err := b.settle(); err != nil {
		if terr := l.Teardown(); terr != nil {
			return nil, fmt.Errorf("lab %s: %w (and cleaning up: %v)", l.Prefix, err, terr)
		}
		return nil, fmt.Errorf("lab %s: %w", l.Prefix, err)
	}
	b.logf("lab %s ready: topology %s, %d node(s), %d pod(s)", l.Prefix, l.Topology, len(l.Nodes), len(l.Pods))
	return l, nil
}

// Teardown removes every namespace the lab made, and with them every link
// in them: it first deletes the links of the node namespaces (so veth
// pairs are gone when Teardown returns, not when the kernel gets round to
// freeing the namespaces), then unmounts and removes the namespaces. It is
// idempotent and keeps going past errors, returning them joined.
func (l *Lab) Teardown() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for i := len(l.made) - 1; i >= 0; i-- {
		name := l.made[i]
		if _, err := os.Stat(nsPath(name)); err == nil {
			if err := deleteLinks(name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	var kept []string
	for i := len(l.made) - 1; i >= 0; i-- {
		if err := deleteNS(l.made[i]); err != nil {
			errs = append(errs, err)
			kept = append(kept, l.made[i])
		}
	}
	l.made = kept
	if len(kept) == 0 && l.lock != nil {
		_ = os.Remove(l.lock.Name())
		_ = l.lock.Close()
		l.lock = nil
	}
	return errors.Join(errs...)
}

// LockDir holds one lock file per lab that exists in a running process: a
// lab kept with --keep outlives its process and its lock.
const LockDir = "/run/podtrace-lab"

// holdLock takes the lab's lock, or says that another process uses the
// prefix.
func holdLock(prefix string) (*os.File, error) {
	if err := os.MkdirAll(LockDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", LockDir, err)
	}
	f, err := os.OpenFile(filepath.Join(LockDir, prefix+".lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("prefix %q is in use by another running lab", prefix)
	}
	return f, nil
}

// inUse reports whether a running process holds the lab's lock.
func inUse(prefix string) bool {
	f, err := os.Open(filepath.Join(LockDir, prefix+".lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// deleteLinks deletes every link but loopback in a namespace.
func deleteLinks(name string) error {
	return inNS(name, func() error {
		ls, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("namespace %s: list links: %w", name, err)
		}
		var errs []error
		for _, lk := range ls {
			if lk.Attrs().Flags&net.FlagLoopback != 0 {
				continue
			}
			if err := netlink.LinkDel(lk); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("namespace %s: delete %s: %w", name, lk.Attrs().Name, err))
			}
		}
		return errors.Join(errs...)
	})
}

// Leftovers lists the namespaces of a lab prefix that still exist
// ("<prefix>-..."), sorted. With an empty prefix it lists every namespace
// that looks like a lab's ("pt" + 4 hex digits + "-...").
func Leftovers(prefix string) ([]string, error) {
	entries, err := os.ReadDir(NetNSDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	var out []string
	for _, e := range entries {
		if matchPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

var anyLabRE = regexp.MustCompile(`^pt[0-9a-f]{4}-`)

func matchPrefix(name, prefix string) bool {
	if prefix == "" {
		return anyLabRE.MatchString(name)
	}
	return strings.HasPrefix(name, prefix+"-")
}

// Purge removes the namespaces Leftovers(prefix) lists (links inside them
// go with them) and returns their names: cleanup after a lab whose process
// died or that was kept. With an empty prefix it leaves alone the labs that
// a running process still holds (a test's, a trace's in progress).
func Purge(prefix string) ([]string, error) {
	names, err := Leftovers(prefix)
	if err != nil {
		return nil, err
	}
	var errs []error
	var done []string
	for _, n := range names {
		if prefix == "" && inUse(n[:strings.IndexByte(n, '-')]) {
			continue // a lab a running process (a test, a trace) is using
		}
		if err := deleteNS(n); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, n)
	}
	return done, errors.Join(errs...)
}

// settle waits until every link the lab brought up is operationally up in
// every namespace: the kernel reports carrier changes of new veths a little
// later, and a trace should not start while link notifications for the
// lab's own setup are still coming.
func (b *builder) settle() error {
	deadline := time.Now().Add(5 * time.Second)
	for _, ns := range b.lab.made {
		for {
			var pending []string
			err := withHandle(ns, func(h *netlink.Handle) error {
				ls, err := h.LinkList()
				if err != nil {
					return err
				}
				for _, lk := range ls {
					a := lk.Attrs()
					// Veths end up "up"; devices without carrier
					// tracking (vxlan, bridge without ports) stay "unknown".
					settled := a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown && lk.Type() != "veth"
					if a.Flags&net.FlagUp != 0 && a.Flags&net.FlagLoopback == 0 && !settled {
						pending = append(pending, a.Name)
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("namespace %s: %w", ns, err)
			}
			if len(pending) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("namespace %s: links not up after 5s: %s", ns, strings.Join(pending, ", "))
			}
			select {
			case <-b.ctx.Done():
				return b.ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// builder holds state while a lab is built.
type builder struct {
	ctx      context.Context
	lab      *Lab
	progress io.Writer
}

func (b *builder) logf(format string, args ...any) {
	if b.progress != nil {
		fmt.Fprintf(b.progress, format+"\n", args...)
	}
}

// step checks the context and the test failure hook after a step.
func (b *builder) step(name string) error {
	if err := b.ctx.Err(); err != nil {
		return fmt.Errorf("after %s: %w", name, err)
	}
	if failAt != "" && failAt == name {
		return fmt.Errorf("after %s: forced failure", name)
	}
	return nil
}

// nodeSysctls are set in every node namespace: no IPv6 noise, and bridged
// frames are not handed to the namespace's iptables/arptables (only where
// br_netfilter exposes the knobs).
func nodeSysctls(forward bool) [][2]string {
	f := "0"
	if forward {
		f = "1"
	}
	return [][2]string{
		{"net/ipv6/conf/all/disable_ipv6", "1"},
		{"net/ipv6/conf/default/disable_ipv6", "1"},
		{"net/bridge/bridge-nf-call-iptables", "0"},
		{"net/bridge/bridge-nf-call-ip6tables", "0"},
		{"net/bridge/bridge-nf-call-arptables", "0"},
		{"net/ipv4/ip_forward", f},
	}
}

var podSysctls = [][2]string{
	{"net/ipv6/conf/all/disable_ipv6", "1"},
	{"net/ipv6/conf/default/disable_ipv6", "1"},
}

// addNode creates a node namespace.
func (b *builder) addNode(name string, forward bool) (*Node, error) {
	ns := b.lab.Prefix + "-" + name
	if err := createNS(ns, nodeSysctls(forward)); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	b.lab.made = append(b.lab.made, ns)
	b.lab.Nodes = append(b.lab.Nodes, Node{Name: name, NetNS: ns, Path: nsPath(ns)})
	b.logf("node %s: namespace %s", name, ns)
	return &b.lab.Nodes[len(b.lab.Nodes)-1], b.step("node " + name)
}

// withHandle runs fn with a netlink handle in the named namespace.
func withHandle(ns string, fn func(h *netlink.Handle) error) error {
	nsh, err := netns.GetFromPath(nsPath(ns))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", ns, err)
	}
	defer h.Close()
	return fn(h)
}

// addBridge creates a bridge with an address in a node namespace, up.
func addBridge(h *netlink.Handle, name, cidr string) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: 1500}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", name, err)
	}
	if err := addAddr(h, br, cidr); err != nil {
		return err
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func addAddr(h *netlink.Handle, l netlink.Link, cidr string) error {
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return fmt.Errorf("address %s: %w", cidr, err)
	}
	if err := h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", cidr, l.Attrs().Name, err)
	}
	return nil
}

// podMAC is the MAC Kubernetes CNI plugins derive from an IPv4 address:
// 0a:58 followed by the address bytes.
func podMAC(ip net.IP) net.HardwareAddr {
	ip4 := ip.To4()
	return net.HardwareAddr{0x0a, 0x58, ip4[0], ip4[1], ip4[2], ip4[3]}
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)[:n]
}

// podSpec describes a pod to attach to a node.
type podSpec struct {
	name     string
	node     *Node
	cidr     string           // eth0 address, e.g. 10.244.0.2/24
	gw       string           // default gateway
	onlink   bool             // gateway is not in the subnet (routed)
	vethName string           // host veth name
	hostMAC  net.HardwareAddr // host veth MAC, nil for random
	master   string           // bridge to enslave the host veth to, "" for none
	podRoute bool             // add a /32 route to the pod via its host veth
	proxyARP bool             // proxy_arp on the host veth
	mtu      int              // veth MTU, 0 for 1500
}

// addPod creates a pod namespace and its veth pair: eth0 inside the pod,
// the host end in the node namespace.
func (b *builder) addPod(s podSpec) error {
	ns := b.lab.Prefix + "-" + s.name
	if err := createNS(ns, podSysctls); err != nil {
		return fmt.Errorf("pod %s: %w", s.name, err)
	}
	b.lab.made = append(b.lab.made, ns)
	ip, ipnet, err := net.ParseCIDR(s.cidr)
	if err != nil {
		return fmt.Errorf("pod %s: %w", s.name, err)
	}
	pod := Pod{Name: s.name, NetNS: ns, Path: nsPath(ns), IP: ip.String(), Node: s.node.Name, HostVeth: s.vethName}
	podNS, err := netns.GetFromPath(pod.Path)
	if err != nil {
		return fmt.Errorf("pod %s: open namespace: %w", s.name, err)
	}
	defer podNS.Close()
	mac := podMAC(ip)
	mtu := s.mtu
	if mtu == 0 {
		mtu = 1500
	}
	err = withHandle(s.node.NetNS, func(h *netlink.Handle) error {
		veth := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: s.vethName, MTU: mtu, HardwareAddr: s.hostMAC},
			PeerName:         "eth0",
			PeerHardwareAddr: mac,
			PeerNamespace:    netlink.NsFd(podNS),
		}
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", s.vethName, err)
		}
		host, err := h.LinkByName(s.vethName)
		if err != nil {
			return fmt.Errorf("find veth %s: %w", s.vethName, err)
		}
		pod.HostVethIndex = host.Attrs().Index
		if s.master != "" {
			br, err := h.LinkByName(s.master)
			if err != nil {
				return fmt.Errorf("find bridge %s: %w", s.master, err)
			}
			if err := h.LinkSetMaster(host, br); err != nil {
				return fmt.Errorf("enslave %s to %s: %w", s.vethName, s.master, err)
			}
		}
		if s.proxyARP {
			if err := inNS(s.node.NetNS, func() error {
				// Like Calico: answer at once, not after the random
				// proxy_delay (up to 0.8 s) the kernel applies by default.
				if err := writeSysctl("net/ipv4/neigh/"+s.vethName+"/proxy_delay", "0"); err != nil {
					return err
				}
				return writeSysctl("net/ipv4/conf/"+s.vethName+"/proxy_arp", "1")
			}); err != nil {
				return err
			}
		}
		if err := h.LinkSetUp(host); err != nil {
			return fmt.Errorf("set %s up: %w", s.vethName, err)
		}
		if s.podRoute {
			r := &netlink.Route{LinkIndex: host.Attrs().Index, Scope: netlink.SCOPE_LINK,
				Dst: &net.IPNet{IP: ip.To4(), Mask: net.CIDRMask(32, 32)}}
			if err := h.RouteAdd(r); err != nil {
				return fmt.Errorf("route %s/32 dev %s: %w", ip, s.vethName, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pod %s on %s: %w", s.name, s.node.Name, err)
	}
	err = withHandle(ns, func(h *netlink.Handle) error {
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("find eth0: %w", err)
		}
		pod.MAC = eth0.Attrs().HardwareAddr.String()
		if err := h.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: ipnet.Mask}}); err != nil {
			return fmt.Errorf("add %s to eth0: %w", s.cidr, err)
		}
		if err := h.LinkSetUp(eth0); err != nil {
			return fmt.Errorf("set eth0 up: %w", err)
		}
		r := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP(s.gw)}
		if s.onlink {
			r.Flags = int(netlink.FLAG_ONLINK)
		}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("default route via %s: %w", s.gw, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pod %s: %w", s.name, err)
	}
	b.lab.Pods = append(b.lab.Pods, pod)
	b.logf("pod %s: %s %s on %s via %s", pod.Name, pod.IP, pod.MAC, pod.Node, pod.HostVeth)
	return b.step("pod " + s.name)
}

// bridge builds one node with bridge cni0 and three pods.
func (b *builder) bridge() error {
	node, err := b.addNode("node1", false)
	if err != nil {
		return err
	}
	node.Bridge = "cni0"
	if err := withHandle(node.NetNS, func(h *netlink.Handle) error {
		return addBridge(h, "cni0", "10.244.0.1/24")
	}); err != nil {
		return fmt.Errorf("node1: %w", err)
	}
	if err := b.step("bridge"); err != nil {
		return err
	}
	for i, name := range []string{"pod-a", "pod-b", "pod-c"} {
		if err := b.addPod(podSpec{
			name: name, node: node, cidr: fmt.Sprintf("10.244.0.%d/24", i+2), gw: "10.244.0.1",
			vethName: "veth" + randHex(8), master: "cni0",
		}); err != nil {
			return err
		}
	}
	return nil
}

// vxlan builds two flannel-style nodes; see the package documentation.
func (b *builder) vxlan() error {
	type side struct {
		node     *Node
		underlay string // underlay address, no prefix length
		subnet   string // pod subnet
		gw       string // cni0 address
		vtepMAC  net.HardwareAddr
	}
	sides := []*side{
		{underlay: "192.168.50.1", subnet: "10.244.1.0/24", gw: "10.244.1.1"},
		{underlay: "192.168.50.2", subnet: "10.244.2.0/24", gw: "10.244.2.1"},
	}
	for i, s := range sides {
		n, err := b.addNode(fmt.Sprintf("node%d", i+1), true)
		if err != nil {
			return err
		}
		s.node = n
		n.Bridge, n.Uplink = "cni0", "eth0"
	}
	// Underlay: one veth, eth0 in each node.
	node2NS, err := netns.GetFromPath(sides[1].node.Path)
	if err != nil {
		return fmt.Errorf("node2: open namespace: %w", err)
	}
	defer node2NS.Close()
	if err := withHandle(sides[0].node.NetNS, func(h *netlink.Handle) error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}, PeerName: "eth0", PeerNamespace: netlink.NsFd(node2NS)}
		if err := h.LinkAdd(v); err != nil {
			return fmt.Errorf("add underlay veth: %w", err)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("node1: %w", err)
	}
	for _, s := range sides {
		err := withHandle(s.node.NetNS, func(h *netlink.Handle) error {
			eth0, err := h.LinkByName("eth0")
			if err != nil {
				return fmt.Errorf("find eth0: %w", err)
			}
			if err := addAddr(h, eth0, s.underlay+"/24"); err != nil {
				return err
			}
			if err := h.LinkSetUp(eth0); err != nil {
				return fmt.Errorf("set eth0 up: %w", err)
			}
			if err := addBridge(h, "cni0", s.gw+"/24"); err != nil {
				return err
			}
			vx := &netlink.Vxlan{
				LinkAttrs:    netlink.LinkAttrs{Name: "flannel.1", MTU: 1450},
				VxlanId:      1,
				VtepDevIndex: eth0.Attrs().Index,
				SrcAddr:      net.ParseIP(s.underlay),
				Port:         8472,
				Learning:     false,
			}
			if err := h.LinkAdd(vx); err != nil {
				return fmt.Errorf("add vxlan flannel.1: %w", err)
			}
			fl, err := h.LinkByName("flannel.1")
			if err != nil {
				return fmt.Errorf("find flannel.1: %w", err)
			}
			s.vtepMAC = fl.Attrs().HardwareAddr
			_, sub, _ := net.ParseCIDR(s.subnet)
			if err := h.AddrAdd(fl, &netlink.Addr{IPNet: &net.IPNet{IP: sub.IP, Mask: net.CIDRMask(32, 32)}}); err != nil {
				return fmt.Errorf("add %s/32 to flannel.1: %w", sub.IP, err)
			}
			if err := h.LinkSetUp(fl); err != nil {
				return fmt.Errorf("set flannel.1 up: %w", err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", s.node.Name, err)
		}
		b.logf("node %s: eth0 %s, cni0 %s/24, flannel.1 VNI 1 port 8472 mac %s", s.node.Name, s.underlay, s.gw, s.vtepMAC)
	}
	// What flannel's vxlan backend programs for each remote node: a route
	// to its subnet via its VTEP address (onlink), a permanent neighbour
	// for that address with the VTEP MAC, and an FDB entry sending that
	// MAC to the node's underlay address.
	for i, s := range sides {
		r := sides[1-i]
		err := withHandle(s.node.NetNS, func(h *netlink.Handle) error {
			fl, err := h.LinkByName("flannel.1")
			if err != nil {
				return fmt.Errorf("find flannel.1: %w", err)
			}
			idx := fl.Attrs().Index
			_, sub, _ := net.ParseCIDR(r.subnet)
			if err := h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
				Type: unix.RTN_UNICAST, IP: sub.IP, HardwareAddr: r.vtepMAC}); err != nil {
				return fmt.Errorf("neighbour %s on flannel.1: %w", sub.IP, err)
			}
			if err := h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
				State: netlink.NUD_PERMANENT, IP: net.ParseIP(r.underlay), HardwareAddr: r.vtepMAC}); err != nil {
				return fmt.Errorf("fdb %s dst %s on flannel.1: %w", r.vtepMAC, r.underlay, err)
			}
			if err := h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: sub, Gw: sub.IP, Flags: int(netlink.FLAG_ONLINK)}); err != nil {
				return fmt.Errorf("route %s via %s: %w", sub, sub.IP, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", s.node.Name, err)
		}
	}
	if err := b.step("vxlan"); err != nil {
		return err
	}
	for _, p := range []struct {
		name string
		side *side
		ip   string
	}{
		{"pod-a", sides[0], "10.244.1.2"},
		{"pod-b", sides[1], "10.244.2.2"},
		{"pod-c", sides[0], "10.244.1.3"},
		{"pod-d", sides[1], "10.244.2.3"},
	} {
		if err := b.addPod(podSpec{
			name: p.name, node: p.side.node, cidr: p.ip + "/24", gw: p.side.gw,
			vethName: "veth" + randHex(8), master: "cni0", mtu: 1450,
		}); err != nil {
			return err
		}
	}
	return nil
}

// calicoGateway is the link-local next hop Calico gives every pod; the
// host veth answers ARP for it by proxy.
const calicoGateway = "169.254.1.1"

// routed builds one Calico-style node; see the package documentation.
func (b *builder) routed() error {
	node, err := b.addNode("node1", true)
	if err != nil {
		return err
	}
	// An uplink with a default route, as on a real node: proxy ARP only
	// answers for addresses the node routes out of another interface,
	// and the pods' gateway 169.254.1.1 is routed by the default route.
	// The uplink's far end is the "network" namespace <prefix>-net,
	// holding the node's default gateway 192.168.50.254.
	netName := b.lab.Prefix + "-net"
	if err := createNS(netName, podSysctls); err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	b.lab.made = append(b.lab.made, netName)
	netNS, err := netns.GetFromPath(nsPath(netName))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", netName, err)
	}
	defer netNS.Close()
	node.Uplink = "eth0"
	if err := withHandle(node.NetNS, func(h *netlink.Handle) error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}, PeerName: "node1", PeerNamespace: netlink.NsFd(netNS)}
		if err := h.LinkAdd(v); err != nil {
			return fmt.Errorf("add uplink eth0: %w", err)
		}
		up, err := h.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("find eth0: %w", err)
		}
		if err := addAddr(h, up, "192.168.50.1/24"); err != nil {
			return err
		}
		if err := h.LinkSetUp(up); err != nil {
			return fmt.Errorf("set eth0 up: %w", err)
		}
		if err := h.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.ParseIP("192.168.50.254")}); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("node1: %w", err)
	}
	if err := withHandle(netName, func(h *netlink.Handle) error {
		up, err := h.LinkByName("node1")
		if err != nil {
			return fmt.Errorf("find node1: %w", err)
		}
		if err := addAddr(h, up, "192.168.50.254/24"); err != nil {
			return err
		}
		return h.LinkSetUp(up)
	}); err != nil {
		return fmt.Errorf("%s: %w", netName, err)
	}
	b.logf("node node1: uplink eth0 192.168.50.1/24, default via 192.168.50.254 (namespace %s)", netName)
	if err := b.step("uplink"); err != nil {
		return err
	}
	hostMAC := net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	for i, name := range []string{"pod-a", "pod-b", "pod-c"} {
		if err := b.addPod(podSpec{
			name: name, node: node, cidr: fmt.Sprintf("10.244.0.%d/32", i+2), gw: calicoGateway, onlink: true,
			vethName: "cali" + randHex(11), hostMAC: hostMAC, podRoute: true, proxyARP: true,
		}); err != nil {
			return err
		}
	}
	return nil
}
