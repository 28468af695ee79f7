package trace

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Service is the virtual address a probe was sent to when the trace goes
// through a translation: a Service's ClusterIP and port (cluster), or an
// address a DNAT rule rewrites (local). The trace follows the probe to the
// endpoint the translation chose, which becomes the session's Dst.
type Service struct {
	Name string `json:"name"` // "e2e/svc-local", or the address
	IP   string `json:"ip"`
	Port int    `json:"port,omitempty"`
	// Endpoints are the ready endpoints the plugin knows (name, IP,
	// node), to name the one chosen.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	// NoEndpoints, when set, says why the Service has no ready endpoint
	// ("its EndpointSlices are empty"): no translation can happen.
	NoEndpoints string `json:"noEndpoints,omitempty"`
}

// NATHop is a translation of the probe's connection seen in one node's
// conntrack: a hop of its own in the trace.
type NATHop struct {
	Agent *AgentInfo
	N     *wire.NAT
	// At is where the translation sits in time: the kernel timestamp of
	// the probe's last frame at that node before the translation (the
	// frame entering the node), else when the agent learned of it.
	At time.Time
	// Endpoint names the endpoint the DNAT chose ("e2e/pod-b", or its
	// address when it is not a known pod).
	Endpoint string
	// Family is the rule family that translated it, when one candidate
	// was there ("nftables table ip kube-proxy"), else "".
	Family string
	// Reverse says what happened to the reply: "reply translated back"
	// (conntrack saw it), "no reply went through it".
	Reverse string
	Text    string
}

// NATTo is the first translation of a connection from src to the
// virtual address vip (the probe's, toward a Service), nil when no node
// reported one.
func (t *Trace) NATTo(vip, src string) *NATHop {
	for _, h := range t.NATs {
		if h.N.Orig.Dst == vip && h.N.Orig.Src == src {
			return h
		}
	}
	return nil
}

// HostPort is an address and port as "ip:port" ("[ip]:port" for IPv6),
// the address alone without a port.
func HostPort(ip string, port int) string {
	if port == 0 {
		return ip
	}
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + strconv.Itoa(port)
	}
	return ip + ":" + strconv.Itoa(port)
}

// SetText fills the translation's Text: as the trace shows it.
func (h *NATHop) SetText() {
	h.Text = h.text()
}

func (h *NATHop) text() string {
	n := h.N
	from := HostPort(n.Orig.Dst, n.Orig.DstPort)
	to := HostPort(n.Reply.Src, n.Reply.SrcPort)
	ep := ""
	if h.Endpoint != "" && h.Endpoint != n.Reply.Src {
		ep = " (" + h.Endpoint + ")"
	}
	by := "DNAT"
	if h.Family != "" {
		by = "DNAT by " + h.Family
	} else if len(n.Rules) > 1 {
		by = "DNAT (conntrack does not say which rule set: " + strings.Join(n.Rules, ", ") + " hook NAT here)"
	}
	s := fmt.Sprintf("%s %s → %s%s · conntrack %s %s → %s", by, from, to, ep, n.Proto,
		HostPort(n.Orig.Src, n.Orig.SrcPort), from)
	if n.SNAT {
		s += fmt.Sprintf(" · and SNAT to %s", HostPort(n.Reply.Dst, n.Reply.DstPort))
	}
	return s + " · " + h.Reverse
}

// FamilyText names a NAT rule set the agent found (wire.NAT.Rules).
func FamilyText(r string) string {
	switch {
	case strings.HasPrefix(r, "nftables "):
		return "nftables (table " + strings.TrimPrefix(r, "nftables ") + ")"
	case strings.HasPrefix(r, "ip6tables-legacy"):
		return "ip6tables (legacy)"
	case strings.HasPrefix(r, "iptables-legacy"):
		return "iptables (legacy)"
	case strings.HasPrefix(r, "iptables "):
		return "iptables (nf_tables backend)"
	}
	return r
}

// ReverseText is how the trace shows a reply's reverse translation.
func (h *NATHop) ReverseText() string {
	n := h.N
	return fmt.Sprintf("un-DNAT %s → %s · the reply leaves as the Service's address", HostPort(n.Reply.Src, n.Reply.SrcPort),
		HostPort(n.Orig.Dst, n.Orig.DstPort))
}
