package render

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// hostileRule is a node's nftrace line whose names and rule text are
// made to act on a terminal: a table name with an escape sequence, a rule
// with a bidi override (a rule's comment is anyone's text).
var hostileRule = &wire.NFTrace{Probe: "icmp/1", ID: 1, Family: "bridge", Table: "pt\x1b[2Jtest", Chain: "drop_to_pod",
	Handle: 3, Type: "rule", Verdict: "drop", Rule: "ip protocol icmp drop comment \"\u202egnp\""}

// A lost probe whose node traced the dropping rule: the verdict names it
// in the text line and in the JSON verdict's drop, escaped in both.
func TestDroppingRuleIsNamedInTheVerdictEscaped(t *testing.T) {
	s, streams, armed, notes, err := session.Load("testdata/recordings/bridge-lost")
	if err != nil {
		t.Fatal(err)
	}
	for i := range streams {
		if strings.HasSuffix(streams[i].Agent, "node1") {
			streams[i].Lines = append(streams[i].Lines, &wire.Envelope{V: wire.Version, Seq: 9, Agent: streams[i].Agent,
				Kind: wire.KindNFTrace, NFTrace: hostileRule})
		}
	}
	tr := merge.Merge(s, streams)
	if tr.Verdict.Result != "lost" || tr.Verdict.Drop == nil {
		t.Fatalf("verdict %+v; want lost, with the drop named", tr.Verdict)
	}
	h := Header{Armed: armed, Notes: notes}
	checkRendered(t, tr, h)
	var plain, js bytes.Buffer
	if err := Text(&plain, tr, h, false); err != nil {
		t.Fatal(err)
	}
	want := `the probe was dropped by nftables bridge pt\x1b[2Jtest drop_to_pod rule "ip protocol icmp drop comment \"\u202egnp\"" on pt9e2e-node1`
	if !strings.Contains(plain.String(), "verdict LOST · ") || !strings.Contains(plain.String(), want) {
		t.Errorf("text verdict lacks %s:\n%s", want, plain.String())
	}
	if err := JSON(&js, tr, h); err != nil {
		t.Fatal(err)
	}
	jl := strings.Split(strings.TrimSpace(js.String()), "\n")
	var v struct {
		Drop *trace.Drop `json:"drop"`
	}
	if err := json.Unmarshal([]byte(jl[len(jl)-1]), &v); err != nil {
		t.Fatal(err)
	}
	if v.Drop == nil || v.Drop.Table != hostileRule.Table || v.Drop.Rule != hostileRule.Rule || v.Drop.Verdict != "drop" ||
		v.Drop.Family != "bridge" || v.Drop.Handle != 3 || v.Drop.By != "netfilter" || v.Drop.Backend != "nftables" {
		t.Errorf("JSON drop %+v", v.Drop)
	}
}
