package policy

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The expected answers below are written from the NetworkPolicy API
// documentation (k8s.io/api/networking/v1 doc comments, the "Network
// Policies" concept page); each case quotes the sentence it checks.

var (
	podA = Pod{Namespace: "ns-a", Name: "pod-a", Labels: map[string]string{"app": "client"},
		NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "ns-a", "team": "blue"},
		IP:              netip.MustParseAddr("10.244.0.5")}
	podB = Pod{Namespace: "ns-b", Name: "pod-b", Labels: map[string]string{"app": "web"},
		NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "ns-b"},
		IP:              netip.MustParseAddr("10.244.1.7"),
		Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
			{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			{Name: "metrics", ContainerPort: 9090}, // protocol defaults to TCP
		}}
	tcp8080 = Flow{Protocol: "TCP", Port: 8080}
)

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func proto(p corev1.Protocol) *corev1.Protocol { return &p }
func num(n int) *intstr.IntOrString            { v := intstr.FromInt32(int32(n)); return &v }
func name(s string) *intstr.IntOrString        { v := intstr.FromString(s); return &v }
func i32(n int32) *int32                       { return &n }

func np(ns, n string, spec networkingv1.NetworkPolicySpec) networkingv1.NetworkPolicy {
	return networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: n}, Spec: spec}
}

// ingressPolicy selects pod-b (app=web) for ingress with the given rules.
func ingressPolicy(rules ...networkingv1.NetworkPolicyIngressRule) networkingv1.NetworkPolicy {
	return np("ns-b", "web", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", "web"),
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress:     rules,
	})
}

func portRule(ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{Ports: ports}
}

func peerRule(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers}
}

type tcase struct {
	doc      string // the documentation's sentence this case checks
	flow     Flow
	src, dst []networkingv1.NetworkPolicy
	// want: the expected egress and ingress answers
	egress, ingress bool
	// wantSelecting: policies expected to select (egress, ingress)
	egressSel, ingressSel []string
}

func run(t *testing.T, cases map[string]tcase) {
	t.Helper()
	for n, c := range cases {
		t.Run(n, func(t *testing.T) {
			f := c.flow
			if f.Protocol == "" {
				f = tcp8080
			}
			st, err := Evaluate(Input{Src: podA, Dst: podB, Flow: f, SrcPolicies: c.src, DstPolicies: c.dst})
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if st.Egress.Admitted != c.egress || st.Ingress.Admitted != c.ingress {
				t.Errorf("%s\ngot egress=%v ingress=%v, want egress=%v ingress=%v (%s)", c.doc, st.Egress.Admitted, st.Ingress.Admitted, c.egress, c.ingress, st)
			}
			if got, want := strings.Join(st.Egress.Selecting, ","), strings.Join(c.egressSel, ","); got != want {
				t.Errorf("egress selecting %q, want %q", got, want)
			}
			if got, want := strings.Join(st.Ingress.Selecting, ","), strings.Join(c.ingressSel, ","); got != want {
				t.Errorf("ingress selecting %q, want %q", got, want)
			}
			if st.Admitted() != (c.egress && c.ingress) {
				t.Errorf("Admitted()=%v with egress=%v ingress=%v", st.Admitted(), c.egress, c.ingress)
			}
		})
	}
}

func TestNoPolicySelectsMeansAdmitted(t *testing.T) {
	other := np("ns-b", "db-only", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "db")})
	run(t, map[string]tcase{
		"no policies": {doc: "Traffic is allowed to a pod if there are no NetworkPolicies selecting the pod",
			egress: true, ingress: true},
		"policy selects other pods": {doc: "podSelector selects the pods to which this NetworkPolicy object applies",
			dst: []networkingv1.NetworkPolicy{other}, egress: true, ingress: true},
		"policy of another namespace": {doc: "a policy applies to pods of its own namespace",
			dst: []networkingv1.NetworkPolicy{np("ns-a", "all", networkingv1.NetworkPolicySpec{})}, egress: true, ingress: true},
	})
}

func TestEmptyPodSelectorSelectsAllPodsOfNamespace(t *testing.T) {
	denyAll := np("ns-b", "default-deny", networkingv1.NetworkPolicySpec{})
	run(t, map[string]tcase{
		"default deny ingress": {doc: "An empty selector matches all pods in the policy's namespace. If [ingress] is empty then this NetworkPolicy does not allow any traffic",
			dst: []networkingv1.NetworkPolicy{denyAll}, egress: true, ingress: false, ingressSel: []string{"ns-b/default-deny"}},
	})
}

func TestPolicyTypesDefaults(t *testing.T) {
	// A policy with egress rules and no policyTypes affects egress too; one
	// without egress rules and no policyTypes affects ingress only.
	egressRules := np("ns-a", "egress-dns", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", "client"),
		Egress:      []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: proto(corev1.ProtocolUDP), Port: num(53)}}}},
	})
	noEgress := np("ns-a", "ingress-only", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "client")})
	egressOnly := np("ns-b", "egress-only", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", "web"), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
	})
	denyEgress := np("ns-a", "deny-egress", networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
	})
	run(t, map[string]tcase{
		"egress section implies Egress": {doc: "policies that contain an egress section are assumed to affect egress",
			src: []networkingv1.NetworkPolicy{egressRules}, egress: false, ingress: true, egressSel: []string{"ns-a/egress-dns"}},
		"no egress section: ingress only": {doc: "all policies (whether or not they contain an ingress section) are assumed to affect ingress",
			src: []networkingv1.NetworkPolicy{noEgress}, egress: true, ingress: true},
		"explicit Egress only does not isolate ingress": {doc: "If you want to write an egress-only policy, you must explicitly specify policyTypes [\"Egress\"]",
			dst: []networkingv1.NetworkPolicy{egressOnly}, egress: true, ingress: true},
		"Egress with no rules denies all egress": {doc: "If [egress] is empty then this NetworkPolicy limits all outgoing traffic",
			src: []networkingv1.NetworkPolicy{denyEgress}, egress: false, ingress: true, egressSel: []string{"ns-a/deny-egress"}},
	})
}

func TestRulesAreAdditive(t *testing.T) {
	deny := np("ns-b", "deny", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "web")})
	allow := ingressPolicy(portRule(networkingv1.NetworkPolicyPort{Port: num(8080)}))
	run(t, map[string]tcase{
		"one allowing policy among denying ones": {doc: "the traffic matches at least one ingress rule across all of the NetworkPolicy objects whose podSelector matches the pod",
			dst: []networkingv1.NetworkPolicy{deny, allow}, egress: true, ingress: true, ingressSel: []string{"ns-b/deny", "ns-b/web"}},
	})
}

func TestPorts(t *testing.T) {
	one := func(p networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicy {
		return []networkingv1.NetworkPolicy{ingressPolicy(portRule(p))}
	}
	web := []string{"ns-b/web"}
	run(t, map[string]tcase{
		"no ports admits all": {doc: "If this field is empty or missing, this rule matches all ports",
			dst: []networkingv1.NetworkPolicy{ingressPolicy(networkingv1.NetworkPolicyIngressRule{})}, egress: true, ingress: true, ingressSel: web},
		"number matches": {doc: "only traffic on the specified protocol AND port will be matched",
			dst: one(networkingv1.NetworkPolicyPort{Port: num(8080)}), egress: true, ingress: true, ingressSel: web},
		"other number": {doc: "only traffic on the specified protocol AND port will be matched",
			dst: one(networkingv1.NetworkPolicyPort{Port: num(80)}), egress: true, ingress: false, ingressSel: web},
		"protocol defaults to TCP, UDP flow": {doc: "protocol ... If not specified, this field defaults to TCP",
			flow: Flow{Protocol: "UDP", Port: 8080},
			dst:  one(networkingv1.NetworkPolicyPort{Port: num(8080)}), egress: true, ingress: false, ingressSel: web},
		"UDP rule, UDP flow": {doc: "protocol represents the protocol (TCP, UDP, or SCTP) which traffic must match",
			flow: Flow{Protocol: "UDP", Port: 53},
			dst:  one(networkingv1.NetworkPolicyPort{Protocol: proto(corev1.ProtocolUDP), Port: num(53)}), egress: true, ingress: true, ingressSel: web},
		"SCTP rule, TCP flow": {doc: "protocol represents the protocol (TCP, UDP, or SCTP) which traffic must match",
			dst: one(networkingv1.NetworkPolicyPort{Protocol: proto(corev1.ProtocolSCTP), Port: num(8080)}), egress: true, ingress: false, ingressSel: web},
		"SCTP rule, SCTP flow": {doc: "protocol represents the protocol (TCP, UDP, or SCTP) which traffic must match",
			flow: Flow{Protocol: "SCTP", Port: 8080},
			dst:  one(networkingv1.NetworkPolicyPort{Protocol: proto(corev1.ProtocolSCTP), Port: num(8080)}), egress: true, ingress: true, ingressSel: web},
		"protocol only matches every port": {doc: "If this field [port] is not provided, this matches all port names and numbers",
			dst: one(networkingv1.NetworkPolicyPort{Protocol: proto(corev1.ProtocolTCP)}), egress: true, ingress: true, ingressSel: web},
		"endPort range inside": {doc: "the range of ports from port to endPort if set, inclusive",
			dst: one(networkingv1.NetworkPolicyPort{Port: num(8000), EndPort: i32(8080)}), egress: true, ingress: true, ingressSel: web},
		"endPort range below": {doc: "the range of ports from port to endPort if set, inclusive",
			dst: one(networkingv1.NetworkPolicyPort{Port: num(8081), EndPort: i32(9000)}), egress: true, ingress: false, ingressSel: web},
		"endPort range above": {doc: "the range of ports from port to endPort if set, inclusive",
			dst: one(networkingv1.NetworkPolicyPort{Port: num(7000), EndPort: i32(8079)}), egress: true, ingress: false, ingressSel: web},
		"named port resolved on the destination": {doc: "This can either be a numerical or named port on a pod",
			dst: one(networkingv1.NetworkPolicyPort{Port: name("http")}), egress: true, ingress: true, ingressSel: web},
		"named port of another number": {doc: "This can either be a numerical or named port on a pod",
			dst: one(networkingv1.NetworkPolicyPort{Port: name("metrics")}), egress: true, ingress: false, ingressSel: web},
		"named port unknown on the pod": {doc: "This can either be a numerical or named port on a pod",
			dst: one(networkingv1.NetworkPolicyPort{Port: name("grpc")}), egress: true, ingress: false, ingressSel: web},
		"named port of another protocol": {doc: "only traffic on the specified protocol AND port will be matched",
			flow: Flow{Protocol: "TCP", Port: 53},
			dst:  one(networkingv1.NetworkPolicyPort{Port: name("dns")}), egress: true, ingress: false, ingressSel: web},
		"named UDP port": {doc: "only traffic on the specified protocol AND port will be matched",
			flow: Flow{Protocol: "UDP", Port: 53},
			dst:  one(networkingv1.NetworkPolicyPort{Protocol: proto(corev1.ProtocolUDP), Port: name("dns")}), egress: true, ingress: true, ingressSel: web},
	})
}

func TestICMPIsNotAdmittedByPortRules(t *testing.T) {
	icmp := Flow{Protocol: "ICMP"}
	run(t, map[string]tcase{
		"port rule": {doc: "protocol ... (TCP, UDP, or SCTP): a port rule never matches ICMP",
			flow: icmp, dst: []networkingv1.NetworkPolicy{ingressPolicy(portRule(networkingv1.NetworkPolicyPort{Port: num(8080)}))},
			egress: true, ingress: false, ingressSel: []string{"ns-b/web"}},
		"protocol-only rule": {doc: "protocol defaults to TCP: a TCP rule without port does not match ICMP",
			flow: icmp, dst: []networkingv1.NetworkPolicy{ingressPolicy(portRule(networkingv1.NetworkPolicyPort{}))},
			egress: true, ingress: false, ingressSel: []string{"ns-b/web"}},
		"rule without ports": {doc: "If this field is empty or missing, this rule matches all ports (traffic not restricted by port)",
			flow: icmp, dst: []networkingv1.NetworkPolicy{ingressPolicy(peerRule(networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}}))},
			egress: true, ingress: true, ingressSel: []string{"ns-b/web"}},
	})
}

func TestPortsAndPeersMustBothMatch(t *testing.T) {
	r := networkingv1.NetworkPolicyIngressRule{
		Ports: []networkingv1.NetworkPolicyPort{{Port: num(8080)}},
		From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "red")}},
	}
	run(t, map[string]tcase{
		"port matches, peer does not": {doc: "The traffic must match both ports and from",
			dst: []networkingv1.NetworkPolicy{ingressPolicy(r)}, egress: true, ingress: false, ingressSel: []string{"ns-b/web"}},
	})
}

func TestPeers(t *testing.T) {
	peer := func(p networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicy {
		return []networkingv1.NetworkPolicy{ingressPolicy(peerRule(p))}
	}
	web := []string{"ns-b/web"}
	run(t, map[string]tcase{
		"podSelector alone: policy's namespace only": {doc: "Otherwise it selects the pods matching podSelector in the policy's own namespace",
			dst: peer(networkingv1.NetworkPolicyPeer{PodSelector: sel("app", "client")}), egress: true, ingress: false, ingressSel: web},
		"empty podSelector alone: policy's namespace only": {doc: "if present but empty, it selects all pods ... in the policy's own namespace",
			dst: peer(networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}}), egress: true, ingress: false, ingressSel: web},
		"namespaceSelector alone matches": {doc: "Otherwise it selects all pods in the namespaces selected by namespaceSelector",
			dst: peer(networkingv1.NetworkPolicyPeer{NamespaceSelector: sel("team", "blue")}), egress: true, ingress: true, ingressSel: web},
		"namespaceSelector alone, other namespace": {doc: "namespaceSelector selects namespaces using cluster-scoped labels",
			dst: peer(networkingv1.NetworkPolicyPeer{NamespaceSelector: sel("team", "red")}), egress: true, ingress: false, ingressSel: web},
		"empty namespaceSelector: all namespaces": {doc: "if present but empty, it selects all namespaces",
			dst: peer(networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}}), egress: true, ingress: true, ingressSel: web},
		"both, both match": {doc: "the NetworkPolicyPeer as a whole selects the pods matching podSelector in the Namespaces selected by NamespaceSelector",
			dst: peer(networkingv1.NetworkPolicyPeer{NamespaceSelector: sel("team", "blue"), PodSelector: sel("app", "client")}), egress: true, ingress: true, ingressSel: web},
		"both, pod does not match": {doc: "the NetworkPolicyPeer as a whole selects the pods matching podSelector in the Namespaces selected by NamespaceSelector",
			dst: peer(networkingv1.NetworkPolicyPeer{NamespaceSelector: sel("team", "blue"), PodSelector: sel("app", "other")}), egress: true, ingress: false, ingressSel: web},
		"both, namespace does not match": {doc: "the NetworkPolicyPeer as a whole selects the pods matching podSelector in the Namespaces selected by NamespaceSelector",
			dst: peer(networkingv1.NetworkPolicyPeer{NamespaceSelector: sel("team", "red"), PodSelector: sel("app", "client")}), egress: true, ingress: false, ingressSel: web},
		"two peers are ORed": {doc: "If this field is present and contains at least one item, this rule allows traffic only if the traffic matches at least one item in the from list",
			dst: []networkingv1.NetworkPolicy{ingressPolicy(peerRule(
				networkingv1.NetworkPolicyPeer{NamespaceSelector: sel("team", "red")},
				networkingv1.NetworkPolicyPeer{NamespaceSelector: sel("kubernetes.io/metadata.name", "ns-a")}))},
			egress: true, ingress: true, ingressSel: web},
		"matchExpressions": {doc: "This field follows standard label selector semantics",
			dst: peer(networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "team", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"blue"}}}}}),
			egress: true, ingress: false, ingressSel: web},
		"ipBlock contains": {doc: "ipBlock defines policy on a particular IPBlock",
			dst: peer(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.0.0/16"}}), egress: true, ingress: true, ingressSel: web},
		"ipBlock except": {doc: "except is a slice of CIDRs that should not be included within an IPBlock",
			dst: peer(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.0.0/16", Except: []string{"10.244.0.0/24"}}}), egress: true, ingress: false, ingressSel: web},
		"ipBlock except elsewhere": {doc: "except is a slice of CIDRs that should not be included within an IPBlock",
			dst: peer(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.0.0/16", Except: []string{"10.244.9.0/24"}}}), egress: true, ingress: true, ingressSel: web},
		"ipBlock outside": {doc: "ipBlock defines policy on a particular IPBlock",
			dst: peer(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.0.0/16"}}), egress: true, ingress: false, ingressSel: web},
		"ipBlock IPv6 does not hold an IPv4 peer": {doc: "IPBlock describes a particular CIDR (Ex. \"192.168.1.0/24\",\"2001:db8::/64\")",
			dst: peer(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "::/0"}}), egress: true, ingress: false, ingressSel: web},
	})
}

func TestEgressRulesJudgeTheDestination(t *testing.T) {
	eg := func(r networkingv1.NetworkPolicyEgressRule) []networkingv1.NetworkPolicy {
		return []networkingv1.NetworkPolicy{np("ns-a", "client-out", networkingv1.NetworkPolicySpec{
			PodSelector: *sel("app", "client"),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      []networkingv1.NetworkPolicyEgressRule{r},
		})}
	}
	out := []string{"ns-a/client-out"}
	run(t, map[string]tcase{
		"to the destination's namespace": {doc: "to: ... a list of destinations for outgoing traffic of pods selected for this rule",
			src:    eg(networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("kubernetes.io/metadata.name", "ns-b"), PodSelector: sel("app", "web")}}}),
			egress: true, ingress: true, egressSel: out},
		"podSelector alone in the source's namespace": {doc: "Otherwise it selects the pods matching podSelector in the policy's own namespace",
			src:    eg(networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "web")}}}),
			egress: false, ingress: true, egressSel: out},
		"named port on the destination pod": {doc: "This can either be a numerical or named port on a pod",
			src:    eg(networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{{Port: name("http")}}}),
			egress: true, ingress: true, egressSel: out},
		"ipBlock on the destination IP": {doc: "ipBlock ... egress destinations",
			src:    eg(networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.1.0/24"}}}}),
			egress: true, ingress: true, egressSel: out},
	})
}

func TestStatementText(t *testing.T) {
	deny := ingressPolicy(portRule(networkingv1.NetworkPolicyPort{Port: num(80)}))
	st, err := Evaluate(Input{Src: podA, Dst: podB, Flow: tcp8080, DstPolicies: []networkingv1.NetworkPolicy{deny}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "denied by NetworkPolicy ns-b/web (ingress, selects pod-b; no rule admits pod-a tcp/8080)"; st.String() != want {
		t.Errorf("got  %q\nwant %q", st.String(), want)
	}
	st, err = Evaluate(Input{Src: podA, Dst: podB, Flow: tcp8080})
	if err != nil {
		t.Fatal(err)
	}
	if want := "admitted: no policy selects pod-a for egress; no policy selects pod-b for ingress"; st.String() != want {
		t.Errorf("got  %q\nwant %q", st.String(), want)
	}
	allow := ingressPolicy(portRule(networkingv1.NetworkPolicyPort{Port: num(8080)}))
	st, err = Evaluate(Input{Src: podA, Dst: podB, Flow: tcp8080, DstPolicies: []networkingv1.NetworkPolicy{allow}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "admitted: no policy selects pod-a for egress; tcp/8080 ingress by ns-b/web ingress rule 1"; st.String() != want {
		t.Errorf("got  %q\nwant %q", st.String(), want)
	}
}

func TestInvalidObjectsAreOneLineErrors(t *testing.T) {
	bad := ingressPolicy(peerRule(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/33"}}))
	_, err := Evaluate(Input{Src: podA, Dst: podB, Flow: tcp8080, DstPolicies: []networkingv1.NetworkPolicy{bad}})
	if err == nil || !strings.Contains(err.Error(), "ns-b/web") || !strings.Contains(err.Error(), "10.0.0.0/33") || strings.Contains(err.Error(), "\n") {
		t.Errorf("got %v, want a one-line error naming ns-b/web and the CIDR", err)
	}
	badSel := np("ns-b", "sel", networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}})
	_, err = Evaluate(Input{Src: podA, Dst: podB, Flow: tcp8080, DstPolicies: []networkingv1.NetworkPolicy{badSel}})
	if err == nil || !strings.Contains(err.Error(), "ns-b/sel") || strings.Contains(err.Error(), "\n") {
		t.Errorf("got %v, want a one-line error naming ns-b/sel", err)
	}
}
