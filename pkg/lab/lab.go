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
//
// The files: a lab's lifecycle (Build, its lock, Teardown, Leftovers and
// Purge) in lifecycle.go; each topology in topology_<name>.go, made of the
// building blocks in build.go (node and pod namespaces, veth pairs,
// bridges, addresses); namespace primitives in ns.go.
package lab

import (
	"io"
	"os"
	"sync"
)

// Topologies Build knows, the first is the default.
var Topologies = []string{"bridge", "vxlan", "routed"}

// topology is the builder of one of Topologies (topology_<name>.go), nil
// for an unknown name.
func topology(name string) func(*builder) error {
	switch name {
	case "bridge":
		return (*builder).bridge
	case "vxlan":
		return (*builder).vxlan
	case "routed":
		return (*builder).routed
	}
	return nil
}

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
