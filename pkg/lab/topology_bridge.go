package lab

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

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
