package verdict_test

import (
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// A Service 10.96.0.10:80 whose one endpoint is pod-b:8080 (kube-proxy's
// shape on node1): pod-a's SYN leaves for the virtual IP, node1 DNATs it
// to pod-b and reports the translation (a nat line, as its agent reads it
// from conntrack), and the copies past the DNAT carry pod-b's address.
const vip = "10.96.0.10"

func serviceNode(noEndpoints string) (*handNode, *wire.ProbeSpec) {
	spec := &wire.ProbeSpec{Proto: "tcp", Port: 80, Count: 1, ID: 42000, NAT: true}
	h := newHandNode(ipB, spec)
	spec.Dst = vip
	h.s.Service = &trace.Service{Name: "e2e/web", IP: vip, Port: 80, Endpoints: []trace.Endpoint{h.s.Dst}, NoEndpoints: noEndpoints}
	return h, spec
}

func (h *handNode) dnat(sp int, seenReply bool) {
	h.add("node1", &wire.Envelope{Kind: wire.KindNAT, NAT: &wire.NAT{TS: h.t0.Add(h.at), Probe: "tcp/1", Proto: "tcp",
		Orig:  wire.Tuple{Src: ipA, Dst: vip, SrcPort: sp, DstPort: 80},
		Reply: wire.Tuple{Src: ipB, Dst: ipA, SrcPort: 8080, DstPort: sp},
		DNAT:  true, SeenReply: seenReply, Rules: []string{"nftables ip kube-proxy"}}})
}

// The DNAT is done on node1, then the SYN never reaches pod-b's veth: lost
// after the translation, placed as for pods, and the verdict names the
// Service and the endpoint.
func TestServiceDNATDoneThenLostTowardTheEndpoint(t *testing.T) {
	h, spec := serviceNode("")
	sp := wire.SourcePort(spec, 1)
	h.send(tcp(ipA, vip, sp, 80, "SYN", macA, "0a:58:0a:f4:00:01"), aOut, aVethIn, cni0In)
	h.dnat(sp, false)
	h.wait(time.Second)
	h.probe("timeout", "no answer", 0)
	tr := h.merge()
	v := verdictOf(t, tr)
	if v.Result != "lost" || !strings.HasPrefix(v.Reason, "Service e2e/web: DNAT 10.96.0.10:80 → 10.244.0.3:8080 (pod-b) done at node1, then") {
		t.Errorf("want lost after the DNAT to pod-b, naming the Service and the endpoint")
	}
	if tr.Session.Dst.IP != ipB || len(tr.NATs) != 1 || tr.NATs[0].Family != "nftables (table ip kube-proxy)" {
		t.Errorf("destination %s, translations %d; want pod-b, one DNAT by nftables", tr.Session.Dst.IP, len(tr.NATs))
	}
}

// The SYN crosses the DNAT and reaches pod-b; its SYN-ACK is translated
// back on node1: one journey each way across the translation, a DNAT hop
// on the way there and its reverse on the way back.
func TestServiceDNATJoinsTheCopiesOnBothSidesIntoOneJourney(t *testing.T) {
	h, spec := serviceNode("")
	sp := wire.SourcePort(spec, 1)
	h.send(tcp(ipA, vip, sp, 80, "SYN", macA, "0a:58:0a:f4:00:01"), aOut, aVethIn)
	h.send(tcp(ipA, ipB, sp, 8080, "SYN", "0a:58:0a:f4:00:01", macB), bVethOut, bIn)
	h.send(tcp(ipB, ipA, 8080, sp, "SYN,ACK", macB, macA), bOut, bVethIn)
	h.send(tcp(vip, ipA, 80, sp, "SYN,ACK", macB, macA), aVethOut, aIn)
	h.dnat(sp, true)
	h.probe("reply", "port 80 open (SYN-ACK)", 80*time.Microsecond)
	tr := h.merge()
	v := verdictOf(t, tr)
	if v.Result != "delivered" || v.Answer != "syn-ack" {
		t.Fatalf("want delivered, syn-ack")
	}
	var req, rep *trace.Journey
	for _, j := range tr.Journeys {
		if j.Probe == "tcp/1" && !j.IsReply {
			req = j
		}
		if j.Probe == "tcp/1" && j.IsReply {
			rep = j
		}
	}
	if req == nil || len(req.Obs) != 4 || req.NAT == nil || req.NATAt != 2 || !req.Obs[2].Translated {
		t.Fatalf("request journey %+v; want 4 hops, the DNAT before the third", req)
	}
	if rep == nil || len(rep.Obs) != 4 || rep.NAT == nil || rep.NATAt != 2 || rep.Obs[2].Translated {
		t.Fatalf("answer journey %+v; want 4 hops, translated back before the third", rep)
	}
}

// A Service without ready endpoints: kube-proxy rejects the SYN (ICMP port
// unreachable from the virtual IP); the verdict says which Service and
// why, whatever answered.
func TestServiceWithoutEndpointsIsItsOwnVerdict(t *testing.T) {
	h, spec := serviceNode("its 1 EndpointSlice(s) are empty: no pod matches its selector app=web")
	h.s.Dst = trace.Endpoint{Name: "svc/e2e/web", Short: "web", IP: vip}
	sp := wire.SourcePort(spec, 1)
	h.send(tcp(ipA, vip, sp, 80, "SYN", macA, "0a:58:0a:f4:00:01"), aOut, aVethIn)
	h.send(unreachable(vip, 3, "0a:58:0a:f4:00:01"), aVethOut, aIn)
	h.probe("refused", "connection refused", 30*time.Microsecond)
	v := verdictOf(t, h.merge())
	if v.Result != "no-endpoints" || !strings.Contains(v.Reason, "Service e2e/web has no ready endpoint: its 1 EndpointSlice(s) are empty") ||
		!strings.Contains(v.Reason, "10.96.0.10:80") {
		t.Errorf("want no-endpoints naming e2e/web, its empty EndpointSlices and 10.96.0.10:80")
	}
}
