package trace

import (
	"net"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// RouteTo is the route the agent's namespace takes toward dst: the
// longest-prefix match of its main table as its topology snapshots show it
// (`ip route get` semantics; the snapshot before the probe wins), nil when
// no route matches or the agent sent no snapshot.
func (a *AgentInfo) RouteTo(dst net.IP) *wire.Route {
	if dst == nil {
		return nil
	}
	var best *wire.Route
	bestLen := -1
	for _, t := range []*wire.Topology{a.Before, a.After} {
		if t == nil {
			continue
		}
		for k := range t.Routes {
			r := &t.Routes[k]
			var n *net.IPNet
			if r.Dst == "default" || r.Dst == "" {
				if dst.To4() != nil {
					_, n, _ = net.ParseCIDR("0.0.0.0/0")
				} else {
					_, n, _ = net.ParseCIDR("::/0")
				}
			} else if _, c, err := net.ParseCIDR(r.Dst); err == nil {
				n = c
			} else if ip := net.ParseIP(r.Dst); ip != nil {
				bits := 128
				if ip.To4() != nil {
					bits = 32
				}
				n = &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}
			}
			if n == nil || !n.Contains(dst) || r.Index == 0 {
				continue
			}
			if (n.IP.To4() != nil) != (dst.To4() != nil) {
				continue
			}
			if l, _ := n.Mask.Size(); l > bestLen {
				best, bestLen = r, l
			}
		}
		if best != nil {
			return best // the snapshot before the probe wins
		}
	}
	return best
}
