package netsnap

import (
	"bytes"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// maxPathAddrs bounds the addresses PathAddrs returns.
const maxPathAddrs = 16

// PathAddrs lists the addresses the current network namespace resolves
// (ARP, NDP) on its way to the given hosts: the gateway of the route to
// each host, and for a route through a VXLAN device the remote tunnel
// endpoint (from the neighbour and FDB entries of the device, or its fixed
// remote) and the underlay gateway towards it. Hosts themselves are not
// listed. Lookups that fail (no route: the host is not reachable from
// here) are skipped: an agent that cannot compute its path still captures
// the endpoints' own address resolution.
func PathAddrs(hosts []string) ([]string, error) {
	h, done, err := handle()
	if err != nil {
		return nil, err
	}
	defer done()
	var out []string
	seen := map[string]bool{}
	for _, s := range hosts {
		seen[s] = true
	}
	add := func(ip net.IP) {
		if ip == nil || ip.IsUnspecified() || ip.IsLoopback() || len(out) >= maxPathAddrs {
			return
		}
		s := ip.String()
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, s := range hosts {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("%q is not an IP address", s)
		}
		next, link := routeVia(h, ip)
		if link == nil {
			continue
		}
		if !next.Equal(ip) {
			add(next)
		}
		vx, ok := link.(*netlink.Vxlan)
		if !ok {
			continue
		}
		for _, vtep := range vteps(h, vx, next) {
			add(vtep)
			if gw, _ := routeVia(h, vtep); !gw.Equal(vtep) {
				add(gw)
			}
		}
	}
	return out, nil
}

// routeVia returns the next hop (the gateway, or ip itself when it is on
// link) and the output link of the route to ip.
func routeVia(h *netlink.Handle, ip net.IP) (net.IP, netlink.Link) {
	rs, err := h.RouteGet(ip)
	if err != nil || len(rs) == 0 {
		return nil, nil
	}
	r := rs[0]
	link, err := h.LinkByIndex(r.LinkIndex)
	if err != nil {
		return nil, nil
	}
	if r.Gw != nil {
		return r.Gw, link
	}
	return ip, link
}

// vteps returns the remote tunnel endpoints a VXLAN device sends next's
// frames to: the fixed remote of the device, else the FDB entries for
// next's MAC (or the all-zero default entries).
func vteps(h *netlink.Handle, vx *netlink.Vxlan, next net.IP) []net.IP {
	if vx.Group != nil && !vx.Group.IsMulticast() && !vx.Group.IsUnspecified() {
		return []net.IP{vx.Group}
	}
	fam := netlink.FAMILY_V4
	if next.To4() == nil {
		fam = netlink.FAMILY_V6
	}
	var mac net.HardwareAddr
	if ns, err := dump(func() ([]netlink.Neigh, error) { return h.NeighList(vx.Index, fam) }); err == nil {
		for _, n := range ns {
			if n.IP.Equal(next) {
				mac = n.HardwareAddr
			}
		}
	}
	fdb, err := dump(func() ([]netlink.Neigh, error) { return h.NeighList(vx.Index, unix.AF_BRIDGE) })
	if err != nil {
		return nil
	}
	var out []net.IP
	zero := make(net.HardwareAddr, 6)
	for _, f := range fdb {
		if f.IP == nil || f.IP.IsMulticast() {
			continue
		}
		if (mac != nil && bytes.Equal(f.HardwareAddr, mac)) || bytes.Equal(f.HardwareAddr, zero) {
			out = append(out, f.IP)
		}
	}
	return out
}
