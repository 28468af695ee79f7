package lab

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

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
