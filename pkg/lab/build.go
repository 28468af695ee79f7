package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

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
