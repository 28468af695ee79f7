// Package netsnap takes netlink snapshots of the current network namespace
// (links, bridge FDB, neighbours, routes), follows neighbour, FDB and link
// changes live, and diffs two snapshots.
//
// Every function works on the network namespace of the calling OS thread.
// A capture agent runs entirely inside its target namespace, so that is the
// namespace of the process. A caller that switches a single thread into
// another namespace (tests, tools) must keep its goroutine locked to that
// thread (runtime.LockOSThread) for the duration of a call; each call pins
// itself to the thread it started on, so it never mixes namespaces.
package netsnap

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// NetNSInode returns the inode number of the calling thread's network
// namespace, unique per host while the namespace exists. It reads
// /proc/thread-self/ns/net, not /proc/self/ns/net: a namespace belongs to
// a thread, and /proc/self names the process's main thread.
func NetNSInode() (uint64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		// Kernels before 3.17 have no thread-self.
		if err2 := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st); err2 != nil {
			return 0, fmt.Errorf("stat network namespace: %w", err)
		}
	}
	return st.Ino, nil
}

// Links lists every link of the current network namespace.
//
// ProxyARP is read from the kernel's per-device IPv4 configuration carried
// in the netlink link dump (IFLA_AF_SPEC), which always describes the
// namespace of the netlink socket. Only if that is unavailable it falls
// back to /proc/sys/net/ipv4/conf/IFACE/proxy_arp, which the kernel
// resolves against the network namespace of the reading thread; when
// neither can be read ProxyARP is left false. Captured is always false:
// the agent sets it for the links it captures on.
func Links() ([]wire.Link, error) {
	h, done, err := handle()
	if err != nil {
		return nil, err
	}
	defer done()
	return links(h)
}

// handle opens a netlink handle in the calling thread's namespace and pins
// the goroutine to that thread until done is called.
func handle() (h *netlink.Handle, done func(), err error) {
	runtime.LockOSThread()
	h, err = netlink.NewHandle()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, nil, fmt.Errorf("netlink: %w", err)
	}
	return h, func() { h.Close(); runtime.UnlockOSThread() }, nil
}

func links(h *netlink.Handle) ([]wire.Link, error) {
	ls, err := dump(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	addrs, err := dump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	byIndex := map[int][]string{}
	for _, a := range addrs {
		if a.IPNet != nil {
			byIndex[a.LinkIndex] = append(byIndex[a.LinkIndex], a.IPNet.String())
		}
	}
	proxy, proxyErr := proxyARPByIndex()
	out := make([]wire.Link, 0, len(ls))
	for _, l := range ls {
		wl := toLink(l)
		wl.Addrs = byIndex[wl.Index]
		if proxyErr == nil {
			wl.ProxyARP = proxy[wl.Index]
		} else {
			wl.ProxyARP = proxyARPSysctl(wl.Name)
		}
		out = append(out, wl)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

// toLink converts a netlink link without addresses or proxy_arp.
func toLink(l netlink.Link) wire.Link {
	a := l.Attrs()
	wl := wire.Link{
		Index:  a.Index,
		Name:   a.Name,
		Kind:   l.Type(),
		IfLink: a.ParentIndex,
		Master: a.MasterIndex,
		MTU:    a.MTU,
		State:  operState(a.OperState),
	}
	if a.NetNsID >= 0 {
		wl.PeerNetNSID = a.NetNsID
	}
	if len(a.HardwareAddr) > 0 {
		wl.MAC = a.HardwareAddr.String()
	}
	wl.Promisc = a.Promisc != 0 || a.RawFlags&unix.IFF_PROMISC != 0
	switch d := l.(type) {
	case *netlink.Vxlan:
		wl.VNI = d.VxlanId
		if d.SrcAddr != nil {
			wl.Local = d.SrcAddr.String()
		}
		wl.Port = d.Port
		if d.VtepDevIndex != 0 && wl.IfLink == 0 {
			wl.IfLink = d.VtepDevIndex
		}
		if d.Group != nil && !d.Group.IsMulticast() && !d.Group.IsUnspecified() {
			wl.Remote = d.Group.String()
		}
	case *netlink.Geneve:
		wl.VNI = int(d.ID)
		wl.Port = int(d.Dport)
		if d.Remote != nil && !d.Remote.IsUnspecified() {
			wl.Remote = d.Remote.String()
		}
	}
	return wl
}

// operState names an operational state the way iproute2 does, lower case.
func operState(s netlink.LinkOperState) string {
	switch s {
	case netlink.OperUp:
		return "up"
	case netlink.OperDown:
		return "down"
	case netlink.OperLowerLayerDown:
		return "lowerlayerdown"
	case netlink.OperDormant:
		return "dormant"
	case netlink.OperNotPresent:
		return "notpresent"
	case netlink.OperTesting:
		return "testing"
	default:
		return "unknown"
	}
}

// ipv4DevconfProxyARP is IPV4_DEVCONF_PROXY_ARP from linux/ip.h; the
// IFLA_INET_CONF array is indexed from IPV4_DEVCONF_FORWARDING = 1.
const (
	iflaInetConf         = 1 // IFLA_INET_CONF
	ipv4DevconfProxyARP  = 3
	errNoInetConfNetlink = "no IFLA_INET_CONF in link dump"
)

// proxyARPByIndex dumps links once more, asking for the IPv4 devconf, and
// returns proxy_arp per ifindex.
func proxyARPByIndex() (map[int]bool, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	out := map[int]bool{}
	found := false
	for _, m := range msgs {
		if len(m) < unix.SizeofIfInfomsg {
			continue
		}
		ifi := nl.DeserializeIfInfomsg(m)
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			continue
		}
		for _, a := range attrs {
			if a.Attr.Type != unix.IFLA_AF_SPEC {
				continue
			}
			specs, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				continue
			}
			for _, s := range specs {
				if s.Attr.Type != unix.AF_INET {
					continue
				}
				inet, err := nl.ParseRouteAttr(s.Value)
				if err != nil {
					continue
				}
				for _, c := range inet {
					off := (ipv4DevconfProxyARP - 1) * 4
					if c.Attr.Type == iflaInetConf && len(c.Value) >= off+4 {
						found = true
						out[int(ifi.Index)] = nl.NativeEndian().Uint32(c.Value[off:off+4]) != 0
					}
				}
			}
		}
	}
	if !found && len(msgs) > 0 {
		return nil, errors.New(errNoInetConfNetlink)
	}
	return out, nil
}

// proxyARPSysctl reads proxy_arp through /proc/sys; false when unreadable.
func proxyARPSysctl(name string) bool {
	if name == "" || strings.ContainsAny(name, "/") {
		return false
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + name + "/proxy_arp")
	if err != nil {
		return false
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && v != 0
}

// Take snapshots the current network namespace: links, bridge FDB,
// IPv4/IPv6 neighbours and the routes of the main table. when is stored as
// Topology.When ("before", "after").
//
// Neighbour entries in state NOARP (multicast, broadcast, loopback) and
// entries on loopback are left out. FDB entries a port holds for its own
// multicast address list (flag "self", multicast MAC) are left out; the
// bridge's local entries and all VXLAN FDB entries are kept.
func Take(when string) (*wire.Topology, error) {
	h, done, err := handle()
	if err != nil {
		return nil, err
	}
	defer done()
	ls, err := links(h)
	if err != nil {
		return nil, err
	}
	names := linkNames(ls)
	masters := map[int]int{}
	for _, l := range ls {
		masters[l.Index] = l.Master
	}
	t := &wire.Topology{When: when, Links: ls}

	fdb, err := dump(func() ([]netlink.Neigh, error) { return h.NeighList(0, unix.AF_BRIDGE) })
	if err != nil {
		return nil, fmt.Errorf("list bridge FDB: %w", err)
	}
	for _, n := range fdb {
		if keepFDB(n) {
			t.FDB = append(t.FDB, toFDB(n, names, masters))
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := dump(func() ([]netlink.Neigh, error) { return h.NeighList(0, fam) })
		if err != nil {
			return nil, fmt.Errorf("list neighbours: %w", err)
		}
		for _, n := range ns {
			if keepNeigh(n, names) {
				t.Neigh = append(t.Neigh, toNeigh(n, names))
			}
		}
	}
	rs, err := dump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range rs {
		t.Routes = append(t.Routes, toRoute(r, names))
	}
	return t, nil
}

func linkNames(ls []wire.Link) map[int]string {
	m := make(map[int]string, len(ls))
	for _, l := range ls {
		m[l.Index] = l.Name
	}
	return m
}

func keepFDB(n netlink.Neigh) bool {
	if n.Flags&netlink.NTF_SELF != 0 && n.Flags&netlink.NTF_MASTER == 0 &&
		len(n.HardwareAddr) > 0 && n.HardwareAddr[0]&1 == 1 && n.IP == nil {
		return false // a port's own multicast address list
	}
	return true
}

func keepNeigh(n netlink.Neigh, names map[int]string) bool {
	if n.State&netlink.NUD_NOARP != 0 {
		return false
	}
	if n.IP == nil || n.IP.IsLoopback() || n.IP.IsMulticast() {
		return false
	}
	if names[n.LinkIndex] == "lo" {
		return false
	}
	return true
}

func toFDB(n netlink.Neigh, names map[int]string, masters map[int]int) wire.FDB {
	f := wire.FDB{
		Port:  names[n.LinkIndex],
		Index: n.LinkIndex,
		VLAN:  n.Vlan,
		Flags: fdbFlags(n),
		Local: n.State&netlink.NUD_PERMANENT != 0,
	}
	if f.Port == "" {
		f.Port = strconv.Itoa(n.LinkIndex)
	}
	if len(n.HardwareAddr) > 0 {
		f.MAC = n.HardwareAddr.String()
	}
	master := n.MasterIndex
	if master == 0 && n.Flags&netlink.NTF_SELF == 0 {
		master = masters[n.LinkIndex]
	}
	if master != 0 {
		f.Bridge = names[master]
	}
	if n.IP != nil && !n.IP.IsUnspecified() {
		f.Dst = n.IP.String()
	}
	return f
}

// fdbFlags renders FDB flags like `bridge fdb show`.
func fdbFlags(n netlink.Neigh) string {
	var fl []string
	for _, f := range []struct {
		bit  int
		name string
	}{
		{netlink.NTF_SELF, "self"},
		{netlink.NTF_MASTER, "master"},
		{netlink.NTF_ROUTER, "router"},
		{netlink.NTF_EXT_LEARNED, "extern_learn"},
		{netlink.NTF_OFFLOADED, "offload"},
		{netlink.NTF_STICKY, "sticky"},
	} {
		if n.Flags&f.bit != 0 {
			fl = append(fl, f.name)
		}
	}
	switch {
	case n.State&netlink.NUD_PERMANENT != 0:
		fl = append(fl, "permanent")
	case n.State&netlink.NUD_NOARP != 0:
		fl = append(fl, "static")
	}
	return strings.Join(fl, ",")
}

func toNeigh(n netlink.Neigh, names map[int]string) wire.Neigh {
	w := wire.Neigh{
		Dev:   names[n.LinkIndex],
		Index: n.LinkIndex,
		State: NeighState(n.State),
	}
	if n.IP != nil {
		w.IP = n.IP.String()
	}
	if len(n.HardwareAddr) > 0 {
		w.MAC = n.HardwareAddr.String()
	}
	return w
}

// NeighState names a NUD state bit set like iproute2 ("REACHABLE",
// "STALE", "INCOMPLETE", "FAILED", "PERMANENT", ...; "NONE" for 0).
func NeighState(s int) string {
	var out []string
	for _, b := range []struct {
		bit  int
		name string
	}{
		{netlink.NUD_INCOMPLETE, "INCOMPLETE"},
		{netlink.NUD_REACHABLE, "REACHABLE"},
		{netlink.NUD_STALE, "STALE"},
		{netlink.NUD_DELAY, "DELAY"},
		{netlink.NUD_PROBE, "PROBE"},
		{netlink.NUD_FAILED, "FAILED"},
		{netlink.NUD_NOARP, "NOARP"},
		{netlink.NUD_PERMANENT, "PERMANENT"},
	} {
		if s&b.bit != 0 {
			out = append(out, b.name)
		}
	}
	if len(out) == 0 {
		return "NONE"
	}
	return strings.Join(out, ",")
}

func toRoute(r netlink.Route, names map[int]string) wire.Route {
	w := wire.Route{
		Dst:   "default",
		Index: r.LinkIndex,
		Dev:   names[r.LinkIndex],
		Scope: r.Scope.String(),
	}
	if r.Dst != nil {
		if ones, _ := r.Dst.Mask.Size(); ones != 0 || !r.Dst.IP.IsUnspecified() {
			w.Dst = r.Dst.String()
		}
	}
	if r.Gw != nil {
		w.Gateway = r.Gw.String()
	} else if r.Via != nil {
		w.Gateway = r.Via.String()
	}
	if len(r.MultiPath) > 0 {
		var gws, devs []string
		for _, p := range r.MultiPath {
			if p.Gw != nil {
				gws = append(gws, p.Gw.String())
			}
			devs = append(devs, names[p.LinkIndex])
		}
		w.Gateway = strings.Join(gws, ",")
		if w.Dev == "" {
			w.Dev = strings.Join(devs, ",")
		}
	}
	if r.Src != nil {
		w.Src = r.Src.String()
	}
	w.Protocol = protoName(int(r.Protocol))
	return w
}

// protoName names a route protocol like iproute2.
func protoName(p int) string {
	switch p {
	case unix.RTPROT_UNSPEC:
		return "unspec"
	case unix.RTPROT_REDIRECT:
		return "redirect"
	case unix.RTPROT_KERNEL:
		return "kernel"
	case unix.RTPROT_BOOT:
		return "boot"
	case unix.RTPROT_STATIC:
		return "static"
	case unix.RTPROT_RA:
		return "ra"
	case unix.RTPROT_DHCP:
		return "dhcp"
	case unix.RTPROT_BIRD:
		return "bird"
	case unix.RTPROT_BGP:
		return "bgp"
	default:
		return strconv.Itoa(p)
	}
}
