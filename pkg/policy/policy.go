// Package policy models Kubernetes NetworkPolicy (networking.k8s.io/v1) for
// one probe: given the policies of the source's and the destination's
// namespaces, the two pods and the probe's flow, it states which policies
// select the source for egress and the destination for ingress, and whether
// any of their rules admits the flow. It is evidence to print beside a live
// verdict, not an enforcement engine: it reads the objects the API server
// returned and never talks to the cluster itself.
//
// The semantics are those of the API's documentation (the doc comments of
// k8s.io/api/networking/v1 and the "Network Policies" concept page):
//   - a pod is isolated for a direction when at least one policy of its
//     namespace selects it (podSelector; empty selects every pod) and has that
//     direction in its policyTypes; without policyTypes a policy affects
//     Ingress always, and Egress only when it has an egress section;
//   - an isolated pod admits a connection when at least one rule, across all
//     selecting policies, matches it; rules add up, there is no deny rule;
//   - a rule matches when both its ports and its peers match; an empty or
//     missing list matches everything;
//   - a port matches on protocol (default TCP) and port: a number, a range
//     port..endPort, or a name resolved on the destination pod's containers;
//     no port matches every port of the protocol; ICMP has no ports, so only a
//     rule without ports admits it;
//   - a peer is a podSelector (in the policy's namespace), a namespaceSelector
//     (every pod of those namespaces), both (those pods in those namespaces),
//     or an ipBlock (a CIDR minus its except CIDRs) matched on the peer's IP.
//
// A connection needs both: the source's egress and the destination's ingress.
package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Pod is what the model needs of one end of the flow.
type Pod struct {
	Namespace string
	Name      string
	Labels    map[string]string
	// NamespaceLabels are the labels of the pod's namespace (namespaceSelector).
	NamespaceLabels map[string]string
	IP              netip.Addr
	// Ports are the pod's containers' ports; their names resolve named ports.
	Ports []corev1.ContainerPort
}

func (p Pod) ref() string { return p.Namespace + "/" + p.Name }

// Flow is the probe: its protocol ("TCP", "UDP", "SCTP" or "ICMP", any case)
// and, for the port protocols, the destination port.
type Flow struct {
	Protocol string
	Port     int32
}

func (f Flow) String() string {
	p := strings.ToLower(f.Protocol)
	if f.hasPorts() {
		return fmt.Sprintf("%s/%d", p, f.Port)
	}
	return p
}

func (f Flow) hasPorts() bool {
	switch strings.ToUpper(f.Protocol) {
	case "TCP", "UDP", "SCTP":
		return true
	}
	return false
}

// Input is one question to the model.
type Input struct {
	Src, Dst Pod
	Flow     Flow
	// SrcPolicies are the NetworkPolicies of the source's namespace,
	// DstPolicies those of the destination's (the same list when both pods
	// share a namespace). Policies of other namespaces are ignored.
	SrcPolicies []networkingv1.NetworkPolicy
	DstPolicies []networkingv1.NetworkPolicy
}

// Direction is "egress" (the source sending) or "ingress" (the destination
// receiving).
type Direction string

const (
	Egress  Direction = "egress"
	Ingress Direction = "ingress"
)

// Rule names one rule of one policy: "ns/name" and its index in the policy's
// ingress or egress list.
type Rule struct {
	Policy string `json:"policy"`
	Index  int    `json:"rule"`
}

// Side is the model's answer for one direction.
type Side struct {
	Direction Direction `json:"direction"`
	// Pod is the pod the direction is about: the source for egress, the
	// destination for ingress.
	Pod string `json:"pod"`
	// Selecting are the policies ("ns/name", sorted) that select Pod for this
	// direction; none means the pod is not isolated and the flow is admitted.
	Selecting []string `json:"selecting,omitempty"`
	// AdmittedBy are the rules that admit the flow.
	AdmittedBy []Rule `json:"admittedBy,omitempty"`
	Admitted   bool   `json:"admitted"`
}

// Statement is the model's answer for a flow.
type Statement struct {
	Src, Dst string
	Flow     Flow
	Egress   Side
	Ingress  Side
}

// Admitted says whether the model admits the flow: both directions must.
func (s Statement) Admitted() bool { return s.Egress.Admitted && s.Ingress.Admitted }

// String is the statement in one line, e.g. "denied by NetworkPolicy
// e2e/deny-web (ingress, selects pod-b; no rule admits pod-a tcp/8080)" or
// "admitted: no policy selects pod-a for egress; no policy selects pod-b for
// ingress".
func (s Statement) String() string {
	srcShort, dstShort := short(s.Src), short(s.Dst)
	if !s.Admitted() {
		var parts []string
		for _, side := range []Side{s.Egress, s.Ingress} {
			if side.Admitted {
				continue
			}
			var what string
			if side.Direction == Egress {
				what = fmt.Sprintf("no rule admits %s to %s", s.Flow, dstShort)
			} else {
				what = fmt.Sprintf("no rule admits %s %s", srcShort, s.Flow)
			}
			noun := "NetworkPolicy"
			if len(side.Selecting) > 1 {
				noun = "NetworkPolicies"
			}
			parts = append(parts, fmt.Sprintf("%s %s (%s, selects %s; %s)", noun, strings.Join(side.Selecting, ", "), side.Direction, short(side.Pod), what))
		}
		return "denied by " + strings.Join(parts, " and ")
	}
	var parts []string
	for _, side := range []Side{s.Egress, s.Ingress} {
		if len(side.Selecting) == 0 {
			parts = append(parts, fmt.Sprintf("no policy selects %s for %s", short(side.Pod), side.Direction))
			continue
		}
		var rules []string
		for _, r := range side.AdmittedBy {
			rules = append(rules, fmt.Sprintf("%s %s rule %d", r.Policy, side.Direction, r.Index+1))
		}
		parts = append(parts, fmt.Sprintf("%s %s by %s", s.Flow, side.Direction, strings.Join(rules, ", ")))
	}
	return "admitted: " + strings.Join(parts, "; ")
}

func short(ref string) string {
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

// Evaluate answers the question. An error names the policy and field the
// model could not read (an invalid selector or CIDR); the API server
// validates both, so it means the object did not come from one.
func Evaluate(in Input) (Statement, error) {
	st := Statement{Src: in.Src.ref(), Dst: in.Dst.ref(), Flow: in.Flow}
	var err error
	if st.Egress, err = side(Egress, in.Src, in.Dst, in.SrcPolicies, in); err != nil {
		return Statement{}, err
	}
	if st.Ingress, err = side(Ingress, in.Dst, in.Src, in.DstPolicies, in); err != nil {
		return Statement{}, err
	}
	return st, nil
}

// side evaluates one direction: self is the pod the policies may select,
// peer the other end.
func side(dir Direction, self, peer Pod, policies []networkingv1.NetworkPolicy, in Input) (Side, error) {
	s := Side{Direction: dir, Pod: self.ref()}
	for i := range policies {
		np := &policies[i]
		if np.Namespace != self.Namespace {
			continue
		}
		name := np.Namespace + "/" + np.Name
		if !affects(np, dir) {
			continue
		}
		sel, err := matches(&np.Spec.PodSelector, self.Labels)
		if err != nil {
			return Side{}, fmt.Errorf("networkpolicy %s: podSelector: %v", name, err)
		}
		if !sel {
			continue
		}
		s.Selecting = append(s.Selecting, name)
		var rules []rule
		if dir == Ingress {
			for _, r := range np.Spec.Ingress {
				rules = append(rules, rule{ports: r.Ports, peers: r.From})
			}
		} else {
			for _, r := range np.Spec.Egress {
				rules = append(rules, rule{ports: r.Ports, peers: r.To})
			}
		}
		for j, r := range rules {
			ok, err := r.admits(np.Namespace, peer, in.Dst, in.Flow)
			if err != nil {
				return Side{}, fmt.Errorf("networkpolicy %s: %s rule %d: %v", name, dir, j+1, err)
			}
			if ok {
				s.AdmittedBy = append(s.AdmittedBy, Rule{Policy: name, Index: j})
			}
		}
	}
	sort.Strings(s.Selecting)
	s.Admitted = len(s.Selecting) == 0 || len(s.AdmittedBy) > 0
	return s, nil
}

// affects applies policyTypes and its default: Ingress always, Egress when the
// policy has an egress section.
func affects(np *networkingv1.NetworkPolicy, dir Direction) bool {
	types := np.Spec.PolicyTypes
	if len(types) == 0 {
		if dir == Ingress {
			return true
		}
		return len(np.Spec.Egress) > 0
	}
	want := networkingv1.PolicyTypeIngress
	if dir == Egress {
		want = networkingv1.PolicyTypeEgress
	}
	for _, t := range types {
		if t == want {
			return true
		}
	}
	return false
}

type rule struct {
	ports []networkingv1.NetworkPolicyPort
	peers []networkingv1.NetworkPolicyPeer
}

// admits: both the ports and the peers must match. policyNS is the policy's
// namespace, peer the other end of the flow, dst the flow's destination (whose
// containers name the ports).
func (r rule) admits(policyNS string, peer, dst Pod, f Flow) (bool, error) {
	if len(r.ports) > 0 {
		any := false
		for _, p := range r.ports {
			if portMatches(p, dst, f) {
				any = true
				break
			}
		}
		if !any {
			return false, nil
		}
	}
	if len(r.peers) == 0 {
		return true, nil
	}
	for i := range r.peers {
		ok, err := peerMatches(&r.peers[i], policyNS, peer)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func portMatches(p networkingv1.NetworkPolicyPort, dst Pod, f Flow) bool {
	if !f.hasPorts() {
		return false // ICMP and other port-less protocols: no port rule admits them
	}
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	if !strings.EqualFold(string(proto), f.Protocol) {
		return false
	}
	if p.Port == nil {
		return true
	}
	if p.Port.Type == intstr.String {
		for _, cp := range dst.Ports {
			cpProto := cp.Protocol
			if cpProto == "" {
				cpProto = corev1.ProtocolTCP
			}
			if cp.Name == p.Port.StrVal && strings.EqualFold(string(cpProto), f.Protocol) && cp.ContainerPort == f.Port {
				return true
			}
		}
		return false
	}
	lo, hi := p.Port.IntVal, p.Port.IntVal
	if p.EndPort != nil {
		hi = *p.EndPort
	}
	return f.Port >= lo && f.Port <= hi
}

func peerMatches(peer *networkingv1.NetworkPolicyPeer, policyNS string, p Pod) (bool, error) {
	if peer.IPBlock != nil {
		return ipBlockMatches(peer.IPBlock, p.IP)
	}
	if peer.NamespaceSelector != nil {
		ok, err := matches(peer.NamespaceSelector, p.NamespaceLabels)
		if err != nil {
			return false, fmt.Errorf("namespaceSelector: %v", err)
		}
		if !ok {
			return false, nil
		}
	} else if p.Namespace != policyNS {
		return false, nil // podSelector alone: the policy's own namespace
	}
	if peer.PodSelector != nil {
		ok, err := matches(peer.PodSelector, p.Labels)
		if err != nil {
			return false, fmt.Errorf("podSelector: %v", err)
		}
		return ok, nil
	}
	return peer.NamespaceSelector != nil, nil
}

func ipBlockMatches(b *networkingv1.IPBlock, ip netip.Addr) (bool, error) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return false, fmt.Errorf("ipBlock cidr %q: not a CIDR", b.CIDR)
	}
	if !ip.IsValid() || !cidr.Contains(ip.Unmap()) {
		return false, nil
	}
	for _, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			return false, fmt.Errorf("ipBlock except %q: not a CIDR", e)
		}
		if ex.Contains(ip.Unmap()) {
			return false, nil
		}
	}
	return true, nil
}

func matches(sel *metav1.LabelSelector, l map[string]string) (bool, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	return s.Matches(labels.Set(l)), nil
}
