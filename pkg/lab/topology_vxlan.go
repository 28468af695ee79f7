package lab

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

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
