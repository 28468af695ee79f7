//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Traces to a Service through kube-proxy's DNAT, as the limited user, in
// the kube-proxy mode the cluster runs (make e2e runs them in nftables
// and in iptables mode; test/e2e/proxy.sh switches).

// proxyMode is the kube-proxy mode of the running cluster.
func proxyMode(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "proxy"))
	if err != nil {
		t.Fatalf("kube-proxy mode: %v (is kube-proxy up? make e2e-up starts it)", err)
	}
	m := strings.TrimSpace(string(b))
	if m != "nftables" && m != "iptables" {
		t.Fatalf("kube-proxy mode %q: want nftables or iptables", m)
	}
	return m
}

type svcLine struct {
	Kind     string `json:"kind"`
	Journey  int    `json:"journey"`
	ProbeID  string `json:"probeId"`
	Reply    bool   `json:"reply"`
	Toward   bool   `json:"toward"`
	Reverse  bool   `json:"reverse"`
	Agent    string `json:"agent"`
	Iface    string `json:"iface"`
	Role     string `json:"role"`
	Endpoint string `json:"endpoint"`
	Family   string `json:"family"`
	Text     string `json:"text"`
	Result   string `json:"result"`
	Answer   string `json:"answer"`
	Reason   string `json:"reason"`
	NAT      *struct {
		Orig struct {
			Src   string `json:"src"`
			Dst   string `json:"dst"`
			DPort int    `json:"dport"`
		} `json:"orig"`
		Reply struct {
			Src   string `json:"src"`
			SPort int    `json:"sport"`
		} `json:"reply"`
		DNAT bool `json:"dnat"`
	} `json:"nat"`
	Service *struct {
		Name string `json:"name"`
		IP   string `json:"ip"`
		Port int    `json:"port"`
	} `json:"service"`
	Dst *struct {
		Name string `json:"Name"`
		IP   string `json:"IP"`
	} `json:"dst"`
}

func parseSvc(t *testing.T, out string) []svcLine {
	t.Helper()
	var ls []svcLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var s svcLine
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
		ls = append(ls, s)
	}
	return ls
}

type svcFacts struct {
	ClusterIP string
	PodIP     string
	PodNode   string
}

// serviceFacts reads a Service's ClusterIP and its endpoint pod's IP and
// node from the API (admin view): the test's expectations.
func serviceFacts(t *testing.T, svc, endpointPod string) svcFacts {
	t.Helper()
	var s struct {
		Spec struct {
			ClusterIP string `json:"clusterIP"`
		} `json:"spec"`
	}
	getJSON(t, adminConfig, &s, "get", "service", "-n", "e2e", svc)
	f := svcFacts{ClusterIP: s.Spec.ClusterIP}
	if endpointPod != "" {
		var p pod
		getJSON(t, adminConfig, &p, "get", "pod", "-n", "e2e", endpointPod)
		f.PodIP, f.PodNode = p.Status.PodIP, p.Spec.NodeName
	}
	return f
}

// checkServiceTrace holds a trace to a Service with one endpoint pod to
// what the cluster says: delivered, the DNAT hop from the ClusterIP:80 to
// the pod's 8080 naming the pod and the rule family of the proxy mode,
// the request followed to the pod's eth0 and the reverse translation on
// the answer.
func checkServiceTrace(t *testing.T, out, mode string, f svcFacts, endpointPod string) {
	t.Helper()
	ls := parseSvc(t, out)
	head, last := ls[0], ls[len(ls)-1]
	if last.Kind != "verdict" || last.Result != "delivered" || last.Answer != "syn-ack" {
		t.Fatalf("verdict %+v; want delivered, syn-ack\n%s", last, out)
	}
	if head.Service == nil || head.Service.IP != f.ClusterIP || head.Service.Port != 80 {
		t.Errorf("trace line service %+v; want %s:80", head.Service, f.ClusterIP)
	}
	family := map[string]string{"nftables": "nftables (table ip kube-proxy)", "iptables": "iptables (nf_tables backend)"}[mode]
	var fwd, rev *svcLine
	for i := range ls {
		l := &ls[i]
		switch {
		case l.Kind == "nat" && l.Toward && fwd == nil:
			fwd = l
		case l.Kind == "nat" && l.Reverse && rev == nil:
			rev = l
		}
	}
	if fwd == nil || rev == nil {
		t.Fatalf("nat lines: DNAT %v, reverse %v; want both\n%s", fwd != nil, rev != nil, out)
	}
	n := fwd.NAT
	if n == nil || !n.DNAT || n.Orig.Dst != f.ClusterIP || n.Orig.DPort != 80 || n.Reply.Src != f.PodIP || n.Reply.SPort != 8080 {
		t.Errorf("DNAT %+v; want %s:80 → %s:8080", n, f.ClusterIP, f.PodIP)
	}
	if fwd.Endpoint != "e2e/"+endpointPod || !strings.Contains(fwd.Text, "e2e/"+endpointPod) {
		t.Errorf("the DNAT names %q (%s); want e2e/%s", fwd.Endpoint, fwd.Text, endpointPod)
	}
	if fwd.Family != family {
		t.Errorf("rule family %q; want %q (kube-proxy %s mode)", fwd.Family, family, mode)
	}
	// The SYN's journey: from pod-a's eth0 to the endpoint pod's eth0.
	var syn []svcLine
	for _, l := range ls {
		if l.Kind == "hop" && l.Journey == fwd.Journey {
			syn = append(syn, l)
		}
	}
	if len(syn) < 4 || syn[0].Agent != "pod-a" || syn[0].Role != "pod eth0" || syn[len(syn)-1].Agent != endpointPod || syn[len(syn)-1].Role != "pod eth0" {
		var got []string
		for _, l := range syn {
			got = append(got, l.Agent+":"+l.Iface)
		}
		t.Errorf("the SYN's hops %v; want pod-a eth0 … %s eth0", got, endpointPod)
	}
}

func TestServiceSameNodeDeliveredThroughTheDNAT(t *testing.T) {
	mode := proxyMode(t)
	f := serviceFacts(t, "svc-local", "pod-b")
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/svc/svc-local", "-o", "json")...)
	if r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	checkServiceTrace(t, r.stdout, mode, f, "pod-b")
	// The text says the same, for a human.
	r = kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "svc/svc-local", "-n", "e2e", "--color", "never")...)
	if r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	for _, want := range []string{"service e2e/svc-local " + f.ClusterIP + ":80 → endpoint e2e/pod-b " + f.PodIP + ":8080", "conntrack", "DNAT by", "verdict DELIVERED"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text trace lacks %q:\n%s", want, r.stdout)
		}
	}
	noNodePodsEventually(t)
}

func TestServiceOtherNodeDeliveredAcrossNodes(t *testing.T) {
	routingMode(t)
	mode := proxyMode(t)
	f := serviceFacts(t, "svc-remote", "pod-x")
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/svc/svc-remote:80", "-o", "json")...)
	if r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	checkServiceTrace(t, r.stdout, mode, f, "pod-x")
	if f.PodNode == nodeName {
		t.Fatalf("pod-x runs on %s, the source's node: the fixture is wrong", f.PodNode)
	}
	noNodePodsEventually(t)
}

func TestServiceWithoutEndpointsIsNamed(t *testing.T) {
	proxyMode(t)
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/svc/svc-empty", "-o", "json")...)
	if r.err == nil {
		t.Fatalf("a trace to a Service without endpoints exited 0:\n%s", r)
	}
	ls := parseSvc(t, r.stdout)
	last := ls[len(ls)-1]
	if last.Result != "no-endpoints" || !strings.Contains(last.Reason, "e2e/svc-empty") || !strings.Contains(last.Reason, "EndpointSlice") {
		t.Fatalf("verdict %+v; want no-endpoints naming e2e/svc-empty and its EndpointSlices", last)
	}
	noNodePodsEventually(t)
}

func TestServiceNamedTargetPortAndClusterIPAsDestination(t *testing.T) {
	proxyMode(t)
	f := serviceFacts(t, "svc-named", "pod-b")
	// The ClusterIP with the Service's port 8080, whose target port is the
	// pod's port named tcp-echo (8080).
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", f.ClusterIP+":8080", "-o", "json")...)
	if r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	ls := parseSvc(t, r.stdout)
	if last := ls[len(ls)-1]; last.Result != "delivered" {
		t.Fatalf("verdict %+v; want delivered", last)
	}
	ok := false
	for _, l := range ls {
		if l.Kind == "nat" && l.NAT != nil && l.NAT.Reply.Src == f.PodIP && l.NAT.Reply.SPort == 8080 && l.NAT.Orig.DPort == 8080 {
			ok = true
		}
	}
	if !ok {
		t.Errorf("no DNAT %s:8080 → %s:8080 (tcp-echo) in\n%s", f.ClusterIP, f.PodIP, r.stdout)
	}
	// A Service with two ports needs one named.
	r = kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/svc/svc-named")...)
	if r.err == nil || !strings.Contains(r.stderr, "has 2 ports") {
		t.Errorf("svc-named without a port: want an error naming its 2 ports, got %s", r)
	}
	noNodePodsEventually(t)
}

// Time to verdict, pod → Service against pod → pod, in the same run.
func TestServiceTimeToVerdict(t *testing.T) {
	mode := proxyMode(t)
	const runs = 3
	median := func(args ...string) (time.Duration, []time.Duration) {
		var d []time.Duration
		for i := 0; i < runs; i++ {
			s := time.Now()
			if r := kubectl(t, userConfig, podtraceArgs(args...)...); r.err != nil {
				t.Fatalf("trace: %s", r)
			}
			d = append(d, time.Since(s))
		}
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2], d
	}
	msvc, dsvc := median("e2e/pod-a", "e2e/svc/svc-local", "-o", "json")
	mpod, dpod := median("e2e/pod-a", "e2e/pod-b", "--proto", "tcp", "--port", "8080", "-o", "json")
	t.Logf("kube-proxy %s: time to verdict, median of %d: pod-a → svc-local %v %v; pod-a → pod-b (tcp 8080) %v %v",
		mode, runs, msvc.Round(time.Millisecond), dsvc, mpod.Round(time.Millisecond), dpod)
	noNodePodsEventually(t)
}
