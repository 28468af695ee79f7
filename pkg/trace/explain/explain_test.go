package explain_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	goldenfile "github.com/podtrace/kubectl-podtrace/internal/golden"
	"github.com/podtrace/kubectl-podtrace/pkg/render"
	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/explain"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// shapes says, for each recording of this package (saved with --save from
// lab and local runs on a real kernel), what the topology the run built
// makes happen and what it rules out: written by hand from the lab's
// topologies and the rules each run added, not from the code under test.
var shapes = map[string]struct {
	must, mustNot []string // topics
	words         []string // words no sentence may use
}{
	// One bridge, pod-a → pod-b, cold ARP caches: the who-has is flooded,
	// the bridge learns both MACs, pod-b answers, the probe is switched.
	"bridge-same-node": {
		must:    []string{"namespace", "arp-request", "veth", "fdb", "neighbour", "arp-reply", "forward", "probe", "delivered", "reply"},
		mustNot: []string{"proxy-arp", "route", "encapsulation", "underlay", "decapsulation", "dnat", "loss"},
	},
	// pod-a → 10.244.0.99, an address nobody holds: the who-has is flooded
	// twice and never answered; the probe never leaves pod-a.
	"arp-unanswered": {
		must:    []string{"namespace", "arp-request", "veth", "loss"},
		mustNot: []string{"arp-reply", "proxy-arp", "probe", "delivered", "reply", "dnat", "encapsulation"},
	},
	// A bridge-family nft rule on the node drops echo requests toward
	// pod-b's veth: the probe is last seen at cni0.
	"bridge-drop": {
		must:    []string{"namespace", "probe", "loss"},
		mustNot: []string{"delivered", "reply", "dnat", "encapsulation", "proxy-arp"},
	},
	// Two nodes, flannel-style: pod-a's gateway is cni0, the node routes
	// into flannel.1, VXLAN across the underlay, decapsulated on node2.
	"vxlan-cross-node": {
		must:    []string{"namespace", "arp-request", "arp-reply", "route", "encapsulation", "underlay", "decapsulation", "delivered", "reply"},
		mustNot: []string{"proxy-arp", "dnat", "loss"},
	},
	// Calico-style: no bridge at all, the gateway 169.254.1.1 is answered
	// by proxy ARP on the host veths, /32 routes per pod.
	"routed-proxy-arp": {
		must:    []string{"namespace", "arp-request", "proxy-arp", "route", "neighbour", "delivered", "reply"},
		mustNot: []string{"fdb", "encapsulation", "underlay", "dnat", "loss"},
		words:   []string{"bridge", "FDB", "flood", "cni0"},
	},
	// The bridge lab's node DNATs 10.96.0.10:80 to pod-b:8080 (nftables,
	// table ip kube-proxy) with br_netfilter on; TCP SYN to the VIP.
	"service-dnat": {
		must:    []string{"namespace", "arp-request", "dnat", "forward", "delivered", "reply"},
		mustNot: []string{"loss", "encapsulation", "proxy-arp"},
	},
}

func load(t *testing.T, dir string) (*trace.Trace, render.Header) {
	t.Helper()
	s, streams, armed, notes, err := session.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return merge.Merge(s, streams), render.Header{Armed: armed, Notes: notes}
}

// The narrative of each recording, with the numbered trace it cites, is
// exactly the golden text (plain; colored reads the same without its
// colors), and its JSON line the golden JSON.
func TestGoldenExplanations(t *testing.T) {
	dirs, err := filepath.Glob("testdata/recordings/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no recordings: %v", err)
	}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			tr, h := load(t, dir)
			h.Explain = explain.Build(tr)
			var plain, colored, js bytes.Buffer
			if err := render.Text(&plain, tr, h, false); err != nil {
				t.Fatal(err)
			}
			if err := render.Text(&colored, tr, h, true); err != nil {
				t.Fatal(err)
			}
			if err := render.JSON(&js, tr, h); err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(colored.Bytes(), []byte("\x1b[")) || !bytes.Equal(stripANSI(colored.Bytes()), plain.Bytes()) {
				t.Errorf("the colored trace must have colors and read exactly like the plain one without them")
			}
			lines := strings.Split(strings.TrimSpace(js.String()), "\n")
			if len(lines) < 2 || !strings.HasPrefix(lines[len(lines)-2], `{"kind":"explain"`) || !strings.HasPrefix(lines[len(lines)-1], `{"kind":"verdict"`) {
				t.Fatalf("the JSON's last two lines must be the explanation and the verdict")
			}
			goldenfile.Check(t, filepath.Join("testdata", "golden", name+".txt"), plain.Bytes())
			goldenfile.Check(t, filepath.Join("testdata", "golden", name+".explain.json"), []byte(lines[len(lines)-2]+"\n"))
		})
	}
}

// What each recording's run built decides which steps the story tells and
// which it must not (see shapes): no sentence for an event that did not
// happen.
func TestTopicsFollowTheTopology(t *testing.T) {
	for name, want := range shapes {
		t.Run(name, func(t *testing.T) {
			tr, _ := load(t, filepath.Join("testdata", "recordings", name))
			n := explain.Build(tr)
			topics := map[string]bool{}
			for _, s := range n.Sentences {
				topics[s.Topic] = true
				for _, w := range want.words {
					if strings.Contains(s.Text, w) {
						t.Errorf("%q: a %s trace has no %s", s.Text, name, w)
					}
				}
			}
			for _, m := range want.must {
				if !topics[m] {
					t.Errorf("no %q sentence; the run made it happen", m)
				}
			}
			for _, m := range want.mustNot {
				if topics[m] {
					t.Errorf("a %q sentence; the run rules it out", m)
				}
			}
		})
	}
}

var (
	ipRe   = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)
	macRe  = regexp.MustCompile(`\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b`)
	ifRe   = regexp.MustCompile(`\b(veth|cali)[0-9a-f]{6,}\b`)
	numRe  = regexp.MustCompile(`^ *(\d+) +`)
	bodyRe = regexp.MustCompile(`^ *\d+ +-?\+?[0-9.]+ (µs|ms|s) `)
)

// Every recording in the repository, old ones included: each line a
// sentence pins exists in the numbered text trace and is the JSON line of
// the same number; it shows the place and what the sentence reads on it;
// and every address, MAC and host veth the sentence names is on the lines
// it pins (or in the trace's header, or the lines below the body it
// cites: path, verdict, policy, the agent's routes).
func TestPinnedLinesCarryTheEvidence(t *testing.T) {
	var dirs []string
	for _, g := range []string{"testdata/recordings/*", "../../render/testdata/recordings/*", "../verdict/testdata/recordings/*"} {
		d, _ := filepath.Glob(g)
		dirs = append(dirs, d...)
	}
	if len(dirs) < 10 {
		t.Fatalf("found %d recordings; want this package's and the older ones of render and verdict", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(filepath.Dir(filepath.Dir(dir)))+"/"+filepath.Base(dir), func(t *testing.T) {
			tr, h := load(t, dir)
			n := explain.Build(tr)
			if len(n.Sentences) == 0 {
				t.Fatal("no sentence")
			}
			h.Explain = n
			var text, js bytes.Buffer
			if err := render.Text(&text, tr, h, false); err != nil {
				t.Fatal(err)
			}
			if err := render.JSON(&js, tr, h); err != nil {
				t.Fatal(err)
			}
			body := map[int]string{} // numbered body lines
			var head, below []string
			inBody, after := false, false
			for _, l := range strings.Split(text.String(), "\n") {
				switch {
				case l == "explain":
					after = true
				case after:
				case bodyRe.MatchString(l):
					inBody = true
					k := 0
					fmt.Sscan(numRe.FindStringSubmatch(l)[1], &k)
					body[k] = l
				case !inBody:
					head = append(head, l)
				default:
					below = append(below, l)
				}
			}
			var rows []string // the JSON hop, nat and change lines in order
			for _, l := range strings.Split(strings.TrimSpace(js.String()), "\n") {
				var k struct{ Kind string }
				if err := json.Unmarshal([]byte(l), &k); err != nil {
					t.Fatal(err)
				}
				if k.Kind == "hop" || k.Kind == "nat" || k.Kind == "change" {
					rows = append(rows, l)
				}
			}
			if len(rows) != len(body) {
				t.Fatalf("%d numbered text lines, %d hop/nat/change JSON lines; want the same rows", len(body), len(rows))
			}
			for _, s := range n.Sentences {
				if len(s.Refs) == 0 {
					t.Errorf("%q pins no line", s.Text)
				}
				evidence := strings.Join(head, "\n")
				for _, r := range s.Refs {
					switch r.Kind {
					case "hop", "nat", "change":
						l, ok := body[r.Line]
						if !ok || r.Line > len(rows) {
							t.Errorf("%q pins line %d; the trace has %d", s.Text, r.Line, len(body))
							continue
						}
						if !strings.Contains(l, r.Agent) || r.Iface != "" && !strings.Contains(l, r.Iface) || !strings.Contains(l, r.Shows) {
							t.Errorf("%q pins line %d for %s %s %q; the line reads %q", s.Text, r.Line, r.Agent, r.Iface, r.Shows, l)
						}
						if !strings.Contains(rows[r.Line-1], `"kind":"`+r.Kind+`"`) {
							t.Errorf("line %d is a %s; JSON line %d is %s", r.Line, r.Kind, r.Line, rows[r.Line-1])
						}
						evidence += "\n" + l + "\n" + rows[r.Line-1]
					case "path", "verdict", "policy":
						if r.Line != 0 {
							t.Errorf("a %s reference with line %d", r.Kind, r.Line)
						}
						found := false
						for _, l := range below {
							if strings.Contains(l, r.Shows) && (r.Kind != "path" || strings.Contains(l, r.Agent+" "+r.Iface)) {
								found = true
								evidence += "\n" + l
							}
						}
						if !found {
							t.Errorf("%q cites the %s for %q; no such line below the trace", s.Text, r.Kind, r.Shows)
						}
					case "routes":
						found := false
						for _, a := range tr.Agents {
							if a.Name != r.Agent || a.Before == nil {
								continue
							}
							for _, rt := range a.Before.Routes {
								txt := rt.Dst
								if rt.Gateway != "" {
									txt += " via " + rt.Gateway
								}
								if txt+" dev "+rt.Dev == r.Shows {
									found = true
									evidence += "\n" + r.Shows
								}
							}
						}
						if !found {
							t.Errorf("%q cites the route %q of %s; its snapshot has none such", s.Text, r.Shows, r.Agent)
						}
					default:
						t.Errorf("%q: unknown reference kind %q", s.Text, r.Kind)
					}
				}
				for _, re := range []*regexp.Regexp{ipRe, macRe, ifRe} {
					for _, tok := range re.FindAllString(s.Text, -1) {
						if !strings.Contains(evidence, tok) && tok != "255.255.255.255" && tok != "ff:ff:ff:ff:ff:ff" {
							t.Errorf("%q names %s, which none of the lines it pins shows", s.Text, tok)
						}
					}
				}
			}
		})
	}
}

// The seed text says the bridge keeps an "ARP cache"; it keeps an FDB of
// MACs, and the ARP cache is a namespace's neighbour table. No sentence of
// any recording says otherwise.
func TestTheBridgeKeepsNoARPCache(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/recordings/*")
	for _, dir := range dirs {
		tr, _ := load(t, dir)
		pods := map[string]bool{}
		for _, a := range tr.Agents {
			if a.Role == wire.RolePod {
				pods[a.Name] = true
			}
		}
		for _, s := range explain.Build(tr).Sentences {
			if !strings.Contains(s.Text, "ARP cache") {
				continue
			}
			ok := strings.Contains(s.Text, "keeps no ARP cache") && s.Topic == "fdb"
			if s.Topic == "neighbour" && strings.Contains(s.Text, "(its ARP cache, in its namespace)") {
				owner, _, _ := strings.Cut(s.Text, "'s own neighbour table")
				ok = pods[owner]
			}
			if !ok {
				t.Errorf("%s: %q", filepath.Base(dir), s.Text)
			}
		}
	}
}

// A loss is told where the verdict places it: the last hop seen, on a
// line of the probe's journey, and the verdict's reasons word for word.
func TestLossIsToldInTheVerdictsWords(t *testing.T) {
	tr, _ := load(t, filepath.Join("testdata", "recordings", "bridge-drop"))
	n := explain.Build(tr)
	var loss []explain.Sentence
	for _, s := range n.Sentences {
		if s.Topic == "loss" {
			loss = append(loss, s)
		}
	}
	// The rule dropped echo requests leaving by pod-b's veth: last seen
	// at the bridge, not at pod-b's port.
	if len(loss) < 2 || !strings.Contains(loss[0].Text, "last seen at ptda15-node1 cni0") ||
		!strings.Contains(loss[0].Text, "never at ptda15-node1 veth340847b1 (ptda15-pod-b)") {
		t.Fatalf("loss sentences %+v; want last seen at cni0, never at pod-b's veth", loss)
	}
	if !slices.ContainsFunc(loss, func(s explain.Sentence) bool { return strings.Contains(s.Text, tr.Verdict.Reason) }) {
		t.Errorf("no loss sentence carries the verdict's reason %q", tr.Verdict.Reason)
	}
}

func stripANSI(b []byte) []byte {
	return regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAll(b, nil)
}
