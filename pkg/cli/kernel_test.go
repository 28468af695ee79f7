package cli

// Real-kernel tests of whole traces: network namespaces, veth pairs, a
// bridge, ARP, nftables, and the agent binary, driven through the same
// commands a user runs.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podtrace/kubectl-podtrace/internal/jsonkeys"
	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/lab"
	"github.com/podtrace/kubectl-podtrace/pkg/launch/local"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

var agentBinary, floodBinary string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // kernel tests skip or fail on their own
		}
		bin, cleanup, err := nettest.AgentBinary("../../cmd/podtrace-agent")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		agentBinary = bin
		flood, cleanupFlood, err := nettest.BuildBinary("../../bench/udpflood", "udpflood")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanupFlood()
		floodBinary = flood
		return m.Run()
	}()
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// podtrace runs the plugin's command line in-process.
func podtrace(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewCmdPodtrace(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(append(args, "--agent-binary", agentBinary))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	code := 0
	var ec *ExitCodeError
	switch {
	case errors.As(err, &ec):
		code = ec.Code
	case err != nil:
		code = ExitError
		errOut.WriteString("error: " + err.Error() + "\n")
	}
	t.Logf("podtrace %s → exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	if slices.Contains(args, "json") {
		checkDocumentedKeys(t, out.String())
	}
	return result{out.String(), errOut.String(), code}
}

// checkDocumentedKeys fails the test for any key of -o json output that
// docs/trace-json.md does not list for its kind.
func checkDocumentedKeys(t *testing.T, out string) {
	t.Helper()
	doc, err := jsonkeys.Load(jsonkeys.DocPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		bad, err := doc.Undocumented([]byte(line))
		if err != nil {
			t.Errorf("-o json printed a line that is not JSON: %v\n%s", err, line)
			continue
		}
		for _, k := range bad {
			t.Errorf("-o json: key %s is not in docs/trace-json.md:\n%.300s", k, line)
		}
	}
}

// JSON lines, as a consumer would read them.
type hopLine struct {
	Kind    string `json:"kind"`
	Journey int    `json:"journey"`
	Toward  bool   `json:"toward"`
	Probe   string `json:"probeId"`
	Reply   bool   `json:"reply"`
	Agent   string `json:"agent"`
	Iface   string `json:"iface"`
	Role    string `json:"role"`
	Owner   string `json:"owner"`
	DeltaNs *int64 `json:"deltaNs"`
	Note    string `json:"note"`
	Msg     string `json:"msg"`
	Text    string `json:"text"`
	TNs     int64  `json:"tNs"`
	NotedNs int64  `json:"notifiedNs"`
	Result  string `json:"result"`
	Answer  string `json:"answer"`
	Reason  string `json:"reason"`
	Last    string `json:"lastSeen"`
	NotSeen string `json:"notSeen"`
	Packet  *struct {
		Dir     string `json:"dir"`
		Summary string `json:"summary"`
		ARP     *struct {
			Op       string `json:"op"`
			SenderIP string `json:"senderIp"`
			TargetIP string `json:"targetIp"`
		} `json:"arp"`
		L4 *struct {
			Proto string `json:"proto"`
			Type  string `json:"type"`
			Flags string `json:"flags"`
		} `json:"l4"`
	} `json:"packet"`
	Agents []struct {
		Name  string `json:"name"`
		Bye   string `json:"bye"`
		Stats []struct {
			Packets, Drops uint64
		} `json:"stats"`
	} `json:"agents"`
}

func parseJSON(t *testing.T, out string) (lines []hopLine) {
	t.Helper()
	for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var h hopLine
		if err := json.Unmarshal([]byte(l), &h); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, l)
		}
		lines = append(lines, h)
	}
	if len(lines) == 0 || lines[len(lines)-1].Kind != "verdict" {
		t.Fatalf("the last JSON line must be the verdict:\n%s", out)
	}
	return lines
}

// journeyHops returns, for the first journey whose first hop matches, the
// hops in the order printed.
func journeyHops(lines []hopLine, match func(h hopLine) bool) []hopLine {
	id := 0
	for _, h := range lines {
		if h.Kind == "hop" && id == 0 && match(h) {
			id = h.Journey
		}
	}
	var out []hopLine
	for _, h := range lines {
		if h.Kind == "hop" && h.Journey == id && id != 0 {
			out = append(out, h)
		}
	}
	return out
}

func place(h hopLine) string { return h.Agent + ":" + h.Iface }

func buildLab(t *testing.T) *lab.Lab { return buildLabOf(t, "bridge") }

// buildLabOf builds a lab of the given topology, torn down after the test.
func buildLabOf(t *testing.T, topology string) *lab.Lab {
	t.Helper()
	nettest.RequireRoot(t)
	prefix := nettest.Prefix()
	l, err := lab.Build(context.Background(), lab.Options{Prefix: prefix, Topology: topology})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Teardown(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		assertNothingLeft(t, prefix)
	})
	return l
}

// assertNothingLeft: no namespace and no agent process of this prefix.
func assertNothingLeft(t *testing.T, prefix string) {
	t.Helper()
	if left, _ := lab.Leftovers(prefix); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte("podtrace-agent")) && bytes.Contains(b, []byte(prefix+"-")) {
			t.Errorf("agent process left behind: %s: %q", p, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}

func pod(t *testing.T, l *lab.Lab, name string) lab.Pod {
	p, ok := l.Pod(name)
	if !ok {
		t.Fatalf("lab has no %s", name)
	}
	return p
}

func TestLabTraceShowsARPFloodFDBAndEchoAtEveryHop(t *testing.T) {
	nettest.RequireRoot(t)
	r := podtrace(t, "lab", "-o", "json")
	if r.code != 0 {
		t.Fatalf("lab exited %d", r.code)
	}
	m := regexp.MustCompile(`building the bridge lab (pt[0-9a-f]{4})`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no lab prefix in progress output:\n%s", r.stderr)
	}
	assertNothingLeft(t, m[1])
	lines := parseJSON(t, r.stdout)

	// ARP who-has from pod-a: at pod-a eth0, its host veth, the bridge,
	// flooded out of pod-b's and pod-c's veths, into pod-b's eth0.
	who := journeyHops(lines, func(h hopLine) bool {
		return h.Packet.ARP != nil && h.Packet.ARP.Op == "who-has" && h.Packet.ARP.SenderIP == "10.244.0.2"
	})
	roles := map[string]int{}
	var outVeths []string
	for _, h := range who {
		roles[h.Role]++
		if h.Role == "host veth" && h.Packet.Dir == "out" {
			outVeths = append(outVeths, h.Iface)
		}
	}
	if len(who) == 0 || place(who[0]) != "pod-a:eth0" || who[0].Packet.Dir != "out" {
		t.Fatalf("who-has must start at pod-a:eth0 going out; got %+v", who)
	}
	if roles["bridge"] != 1 || roles["host veth"] != 3 || roles["pod eth0"] != 2 {
		t.Errorf("who-has seen at roles %v; want pod-a eth0, pod-a's veth, cni0, pod-b's and pod-c's veths, pod-b eth0", roles)
	}
	if len(outVeths) != 2 {
		t.Errorf("who-has flooded out of %v; want pod-b's and pod-c's veths", outVeths)
	}
	var bridgeNote string
	for _, h := range who {
		if h.Role == "bridge" {
			bridgeNote = h.Note
		}
	}
	if !strings.HasPrefix(bridgeNote, "flooded to ") || strings.Count(bridgeNote, "veth") != 2 {
		t.Errorf("bridge note %q; want it flooded to two veths", bridgeNote)
	}

	// is-at from pod-b: back to pod-a only, never out of pod-c's veth.
	isAt := journeyHops(lines, func(h hopLine) bool { return h.Packet.ARP != nil && h.Packet.ARP.Op == "is-at" })
	if len(isAt) == 0 || place(isAt[0]) != "pod-b:eth0" || place(isAt[len(isAt)-1]) != "pod-a:eth0" {
		t.Fatalf("is-at must go from pod-b:eth0 to pod-a:eth0: %+v", isAt)
	}
	for _, h := range isAt {
		if h.Role == "host veth" && h.Packet.Dir == "out" && h.Owner != "pod-a" {
			t.Errorf("is-at left the bridge on %s (owner %q); it must only reach pod-a", h.Iface, h.Owner)
		}
	}

	// Echo request and reply at every hop, in topology order, with deltas.
	wantReq := []string{"pod eth0", "host veth", "bridge", "host veth", "pod eth0"}
	for _, c := range []struct {
		name  string
		reply bool
		first string
	}{{"request", false, "pod-a"}, {"reply", true, "pod-b"}} {
		hops := journeyHops(lines, func(h hopLine) bool { return h.Probe == "icmp/1" && h.Reply == c.reply })
		var got []string
		for i, h := range hops {
			got = append(got, h.Role)
			if i > 0 && h.DeltaNs == nil {
				t.Errorf("echo %s hop %d (%s) has no delta", c.name, i, place(h))
			}
		}
		if strings.Join(got, ",") != strings.Join(wantReq, ",") || hops[0].Agent != c.first {
			t.Errorf("echo %s hops %v from %s; want %v from %s", c.name, got, place(hops[0]), wantReq, c.first)
		}
	}

	// The bridge learned both MACs; the verdict is delivered with an RTT.
	var fdb int
	for _, h := range lines {
		if h.Kind == "change" && strings.Contains(h.Text, "fdb") && strings.Contains(h.Text, "learned") {
			fdb++
		}
	}
	if fdb < 2 {
		t.Errorf("want the bridge to learn pod-a's and pod-b's MACs, saw %d fdb changes", fdb)
	}
	v := lines[len(lines)-1]
	if v.Result != "delivered" || v.Answer != "echo-reply" {
		t.Errorf("verdict %+v; want delivered with an echo reply", v)
	}
	// Every agent said bye and reported its kernel counters; drops, if a
	// loaded machine had any, are reported as a warning, never hidden.
	var warned []string
	for _, h := range lines {
		if h.Kind == "warning" {
			warned = append(warned, h.Msg)
		}
	}
	for _, a := range lines[0].Agents {
		if a.Bye == "" {
			t.Errorf("agent %s said no bye", a.Name)
		}
		if len(a.Stats) == 0 {
			t.Errorf("agent %s reported no capture stats", a.Name)
		}
		for _, s := range a.Stats {
			if s.Drops != 0 && !slices.ContainsFunc(warned, func(w string) bool {
				return strings.HasPrefix(w, a.Name+": the kernel dropped")
			}) {
				t.Errorf("agent %s: kernel drops %d, not in the warnings %q", a.Name, s.Drops, warned)
			}
		}
	}
}

func TestTextVerdictEqualsJSONVerdictAndHasNoEscapes(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-c")
	args := []string{"local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", l.Nodes[0].NetNS}
	js := podtrace(t, append(args, "-o", "json")...)
	tx := podtrace(t, append(args, "--color", "never")...)
	auto := podtrace(t, args...) // a buffer is not a terminal: no color either
	if js.code != 0 || tx.code != 0 || auto.code != 0 {
		t.Fatalf("exit codes %d %d %d", js.code, tx.code, auto.code)
	}
	for _, out := range []string{tx.stdout, auto.stdout} {
		if strings.Contains(out, "\x1b[") {
			t.Errorf("escape codes in uncolored output:\n%q", out)
		}
	}
	lines := parseJSON(t, js.stdout)
	v := lines[len(lines)-1]
	if !strings.Contains(tx.stdout, "verdict "+strings.ToUpper(v.Result)+" ") {
		t.Errorf("text verdict differs from JSON verdict %q:\n%s", v.Result, tx.stdout)
	}
	colored := podtrace(t, append(args, "--color", "always")...)
	if !strings.Contains(colored.stdout, "\x1b[") {
		t.Errorf("--color always printed no color")
	}
}

// nft runs an nftables script inside a namespace of the lab.
func nft(t *testing.T, ns, script string) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft is needed (apt-get install nftables): %v", err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s\n%s", ns, err, out, script)
	}
}

func TestDropBetweenBridgeAndPodBVethIsLostThere(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	node := l.Nodes[0].NetNS
	nft(t, node, fmt.Sprintf(`table bridge podtrace_test {
  chain drop_to_pod { type filter hook forward priority 0; oifname "%s" ip protocol icmp drop; }
}`, b.HostVeth))
	r := podtrace(t, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node, "-o", "json", "--wait", "500ms")
	if r.code != ExitLost {
		t.Fatalf("exit %d; want %d (lost)", r.code, ExitLost)
	}
	v := parseJSON(t, r.stdout)
	last := v[len(v)-1]
	if last.Result != "lost" {
		t.Fatalf("verdict %+v; want lost", last)
	}
	if !strings.Contains(last.NotSeen, b.HostVeth) {
		t.Errorf("not seen %q; want pod-b's veth %s", last.NotSeen, b.HostVeth)
	}
	if !strings.Contains(last.Last, "cni0") && !strings.Contains(last.Last, a.HostVeth) {
		t.Errorf("last seen %q; want the bridge or pod-a's veth", last.Last)
	}
	if !strings.Contains(last.Reason, "bridge") {
		t.Errorf("reason %q should name the bridge", last.Reason)
	}
	// The bridge family's rule that dropped it, named from the node's
	// netfilter trace, as nft lists it.
	var want string
	for k, r := range nftRules(t, node) {
		if strings.HasPrefix(k, "bridge podtrace_test drop_to_pod ") {
			want = r
		}
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var dl dropLine
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &dl); err != nil {
		t.Fatal(err)
	}
	if d := dl.Drop; d == nil || d.Family != "bridge" || d.Table != "podtrace_test" || d.Chain != "drop_to_pod" || d.Rule != want || want == "" {
		t.Errorf("drop %+v; want the bridge rule %q of podtrace_test drop_to_pod", dl.Drop, want)
	}
	// The request never reached pod-b's veth or eth0.
	for _, h := range journeyHops(v, func(h hopLine) bool { return h.Probe == "icmp/1" && !h.Reply }) {
		if h.Iface == b.HostVeth || h.Agent == b.NetNS {
			t.Errorf("dropped request seen at %s", place(h))
		}
	}
}

func TestAbsentDestinationIsARPUnanswered(t *testing.T) {
	l := buildLab(t)
	a := pod(t, l, "pod-a")
	node := l.Nodes[0].NetNS
	r := podtrace(t, "local", "--from", a.NetNS, "--to", "10.244.0.99", "--node-netns", node, "-o", "json", "--wait", "2s")
	if r.code != ExitLost {
		t.Fatalf("exit %d; want %d", r.code, ExitLost)
	}
	v := parseJSON(t, r.stdout)
	last := v[len(v)-1]
	if last.Result != "arp-unanswered" || !strings.Contains(last.Reason, "who-has 10.244.0.99") {
		t.Errorf("verdict %+v; want arp-unanswered for 10.244.0.99", last)
	}
	// The who-has was flooded to every other port of the bridge.
	who := journeyHops(v, func(h hopLine) bool { return h.Packet.ARP != nil && h.Packet.ARP.TargetIP == "10.244.0.99" })
	outs := 0
	for _, h := range who {
		if h.Role == "host veth" && h.Packet.Dir == "out" {
			outs++
		}
	}
	if outs != 2 {
		t.Errorf("who-has for the absent address flooded to %d ports; want 2", outs)
	}
}

func TestDestinationLinkDownIsARPUnanswered(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	node := l.Nodes[0].NetNS
	nettest.Run(t, "ip", "-n", node, "link", "set", b.HostVeth, "down")
	r := podtrace(t, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node, "-o", "json", "--wait", "2s")
	if r.code != ExitLost {
		t.Fatalf("exit %d; want %d", r.code, ExitLost)
	}
	v := parseJSON(t, r.stdout)
	if last := v[len(v)-1]; last.Result != "arp-unanswered" || !strings.Contains(last.Reason, b.IP) {
		t.Errorf("verdict %+v; want arp-unanswered for %s", last, b.IP)
	}
}

// inNetNS runs fn on a thread inside the namespace; sockets it opens stay
// in that namespace. The thread is discarded afterwards.
func inNetNS(t *testing.T, path string, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestTCPAndUDPProbes(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	node := l.Nodes[0].NetNS
	var tcp net.Listener
	var udp net.PacketConn
	inNetNS(t, b.Path, func() (err error) {
		if tcp, err = net.Listen("tcp", ":8080"); err != nil {
			return err
		}
		udp, err = net.ListenPacket("udp", ":8081")
		return err
	})
	defer tcp.Close()
	defer udp.Close()
	base := []string{"local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node, "-o", "json", "--wait", "500ms"}
	for _, c := range []struct {
		name, proto, port, answer string
		flags                     []string // request flags, answer flags
	}{
		{"tcp open", "tcp", "8080", "syn-ack", []string{"SYN", "SYN,ACK"}},
		{"tcp closed", "tcp", "9", "rst", []string{"SYN", "RST,ACK"}},
		{"udp listening", "udp", "8081", "none", nil},
		{"udp closed", "udp", "9", "port-unreachable", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := podtrace(t, append(base, "--proto", c.proto, "--port", c.port)...)
			if r.code != 0 {
				t.Fatalf("exit %d; want delivered", r.code)
			}
			v := parseJSON(t, r.stdout)
			last := v[len(v)-1]
			if last.Result != "delivered" || last.Answer != c.answer {
				t.Fatalf("verdict %+v; want delivered, answer %s", last, c.answer)
			}
			req := journeyHops(v, func(h hopLine) bool { return h.Probe == c.proto+"/1" && !h.Reply })
			if len(req) != 5 || place(req[0]) != a.NetNS+":eth0" || place(req[4]) != b.NetNS+":eth0" {
				t.Fatalf("request hops %+v; want 5 from pod-a's eth0 to pod-b's eth0", req)
			}
			if c.flags != nil {
				ans := journeyHops(v, func(h hopLine) bool { return h.Probe == c.proto+"/1" && h.Reply })
				if req[0].Packet.L4.Flags != c.flags[0] || len(ans) == 0 || ans[0].Packet.L4.Flags != c.flags[1] {
					t.Errorf("flags: request %q answer %v; want %v", req[0].Packet.L4.Flags, ans, c.flags)
				}
			}
		})
	}
}

// A bridge port in hairpin mode (as CNI bridge plugins often set it) floods
// a broadcast back to its sender: the trace shows that copy after the
// bridge, as such, and the verdict is unaffected.
func TestHairpinBroadcastIsShownAfterTheBridge(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	node := l.Nodes[0].NetNS
	nettest.Run(t, "ip", "-n", node, "link", "set", a.HostVeth, "type", "bridge_slave", "hairpin", "on")
	r := podtrace(t, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node, "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	v := parseJSON(t, r.stdout)
	who := journeyHops(v, func(h hopLine) bool {
		return h.Packet.ARP != nil && h.Packet.ARP.Op == "who-has" && h.Packet.ARP.SenderIP == a.IP
	})
	bridgeAt, hairpinAt, reflectedAt := -1, -1, -1
	for i, h := range who {
		switch {
		case h.Role == "bridge":
			bridgeAt = i
		case h.Iface == a.HostVeth && h.Packet.Dir == "out":
			hairpinAt = i
		case h.Agent == a.NetNS && h.Packet.Dir == "in":
			reflectedAt = i
		}
	}
	if bridgeAt < 0 || hairpinAt < bridgeAt || reflectedAt < hairpinAt {
		t.Fatalf("hairpin order: bridge %d, back out of pod-a's port %d, back into pod-a %d; want increasing\n%+v", bridgeAt, hairpinAt, reflectedAt, who)
	}
	if !strings.Contains(who[hairpinAt].Note, "hairpin") || !strings.Contains(who[reflectedAt].Note, "hairpin") {
		t.Errorf("notes %q / %q should say hairpin", who[hairpinAt].Note, who[reflectedAt].Note)
	}
}

// Passive: no probe; existing traffic that matches the tcpdump-syntax
// filter is traced hop by hop, and nothing else.
func TestPassiveObservesFilteredTraffic(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	node := l.Nodes[0].NetNS
	var udp net.PacketConn
	inNetNS(t, a.Path, func() (err error) {
		udp, err = net.ListenPacket("udp", ":0")
		return err
	})
	defer udp.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			// Two flows: only the one on port 5353 matches the filter.
			_, _ = udp.WriteTo([]byte("podtrace passive 5353"), &net.UDPAddr{IP: net.ParseIP(b.IP), Port: 5353})
			_, _ = udp.WriteTo([]byte("podtrace passive 9999"), &net.UDPAddr{IP: net.ParseIP(b.IP), Port: 9999})
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	r := podtrace(t, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node, "--passive", "--duration", "1s",
		"--filter", "udp port 5353", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	v := parseJSON(t, r.stdout)
	if last := v[len(v)-1]; last.Result != "observed" {
		t.Fatalf("verdict %+v; want observed", last)
	}
	full := 0
	for _, h := range v {
		if h.Kind != "hop" {
			continue
		}
		if h.Packet.L4 == nil || h.Packet.L4.Proto != "udp" || !strings.Contains(h.Packet.Summary, ":5353") {
			t.Errorf("a frame the filter excludes was traced: %s at %s", h.Packet.Summary, place(h))
		}
	}
	for _, j := range v {
		if j.Kind == "hop" && place(j) == b.NetNS+":eth0" {
			full++
		}
	}
	// How many of the datagrams sent while the agents were armed is a
	// matter of load; that they are traced to pod-b is not.
	if full == 0 {
		t.Errorf("no port-5353 datagram traced to pod-b's eth0")
	}
}

// Node agents only (as --mode node, or where PodSecurity forbids an agent
// in the pods): the pods' own hops are not observable, the node's are.
// The plan is the one `kubectl podtrace pod-a pod-b --mode node --passive`
// builds against an API server (a fake one holding the lab's pods); only
// where its node agent runs changes: the lab's node namespace instead of a
// pod on node "node1".
func TestNodeAgentsOnlyObservePassively(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	const nodeName = "node1"
	cs, writes := fakeCluster(runningPod("default", "pod-a", a.IP, nodeName), runningPod("default", "pod-b", b.IP, nodeName))
	var out, errOut bytes.Buffer
	o := NewClusterOptions(TraceOptions{IOStreams: genericiooptions.IOStreams{Out: &out, ErrOut: &errOut}})
	o.client = cs
	// The command's own flags, defaults included, as a user types them.
	ctx := context.Background()
	completeAsTyped(t, o, []string{"default/pod-a", "default/pod-b"}, "--mode", "node", "--passive", "--duration", "1500ms", "-o", "json", "--color", "never",
		"--image", "registry.example.com/podtrace-agent:v1")
	if err := o.preflight(ctx); err != nil {
		t.Fatal(err)
	}
	if o.mode != modeNode {
		t.Fatalf("--mode node: preflight chose mode %q", o.mode)
	}
	for _, w := range *writes {
		if w.GetVerb() == "patch" {
			t.Errorf("--mode node: preflight patched pod %s (an ephemeral container)", w.(k8stesting.PatchAction).GetName())
		}
	}
	plan := o.Plan(o.mode)
	if plan.Session.Src.Agent != "" || plan.Session.Dst.Agent != "" {
		t.Errorf("--mode node plan names pod agents %q, %q", plan.Session.Src.Agent, plan.Session.Dst.Agent)
	}
	if len(plan.Agents) != 1 || plan.Agents[0].Role != wire.RoleNode || plan.Agents[0].Target != nodeName {
		t.Fatalf("--mode node plan for two pods on one node: %+v; want one node agent on %s", plan.Agents, nodeName)
	}
	plan.Agents[0].Target = l.Nodes[0].NetNS // the local launcher runs it in the lab's node namespace

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = nettest.Ping(ctx, a.NetNS, b.IP)
			cancel()
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	if err := o.RunPlan(context.Background(), &local.Launcher{Binary: agentBinary}, plan, nil); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	t.Logf("%s", errOut.String())
	v := parseJSON(t, out.String())
	roles := map[string]int{}
	for _, h := range v {
		if h.Kind == "hop" && h.Packet.L4 != nil && h.Packet.L4.Proto == "icmp" {
			roles[h.Role]++
		}
	}
	if roles["host veth"] == 0 || roles["bridge"] == 0 || roles["pod eth0"] != 0 {
		t.Errorf("ICMP seen at roles %v; want host veths and the bridge, no pod eth0", roles)
	}
	if last := v[len(v)-1]; last.Result != "observed" {
		t.Errorf("verdict %+v", last)
	}
}

// IPv6: neighbour discovery instead of ARP (the solicitation flooded by the
// bridge, the advertisement back), the ICMPv6 echo at every hop, and the
// neighbour entries placed at the NDP frames that taught them.
func TestIPv6TraceAcrossABridge(t *testing.T) {
	nettest.RequireRoot(t)
	p := nettest.Prefix()
	t.Cleanup(func() { assertNothingLeft(t, p) }) // runs last: after the namespaces are deleted
	node, a, b, c := nettest.NS(t, p+"-node"), nettest.NS(t, p+"-a"), nettest.NS(t, p+"-b"), nettest.NS(t, p+"-c")
	nettest.Run(t, "ip", "-n", node, "link", "add", "br0", "type", "bridge")
	nettest.Run(t, "ip", "-n", node, "link", "set", "br0", "up")
	for i, pod := range []string{a, b, c} {
		host := fmt.Sprintf("%sv%d", p, i)
		nettest.Veth(t, node, host, pod, p+"e")
		nettest.Run(t, "ip", "-n", node, "link", "set", host, "master", "br0")
		nettest.Run(t, "ip", "-n", pod, "link", "set", p+"e", "name", "eth0")
		nettest.Run(t, "ip", "-n", pod, "addr", "add", fmt.Sprintf("fd00:db8::%d/64", i+2), "dev", "eth0", "nodad")
		nettest.Run(t, "ip", "-n", pod, "link", "set", "eth0", "up")
	}
	r := podtrace(t, "local", "--from", a, "--to", b, "--node-netns", node, "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	v := parseJSON(t, r.stdout)
	if last := v[len(v)-1]; last.Result != "delivered" || last.Answer != "echo-reply" {
		t.Fatalf("verdict %+v", last)
	}
	var req []string
	for _, h := range journeyHops(v, func(h hopLine) bool { return h.Probe == "icmp/1" && !h.Reply }) {
		req = append(req, h.Role)
	}
	if strings.Join(req, ",") != "pod eth0,host veth,bridge,host veth,pod eth0" {
		t.Errorf("ICMPv6 echo request hops %v", req)
	}
	ns := journeyHops(v, func(h hopLine) bool {
		return h.Packet.L4 != nil && h.Packet.L4.Type == "neighbor-solicitation" && h.Agent == a
	})
	floods := 0
	for _, h := range ns {
		if h.Role == "host veth" && h.Packet.Dir == "out" {
			floods++
		}
	}
	if floods != 2 {
		t.Errorf("pod-a's neighbour solicitation left the bridge on %d ports; want 2 (pod-b's and pod-c's)", floods)
	}
	// pod-a learned pod-b's MAC from the advertisement: the change is placed
	// at that frame, before the agent was notified of it.
	placed := false
	for _, h := range v {
		if h.Kind == "change" && h.Agent == a && strings.Contains(h.Text, "fd00:db8::3") {
			placed = h.TNs < h.NotedNs
		}
	}
	if !placed {
		t.Errorf("pod-a's neighbour entry for pod-b is not placed at the NDP frame that taught it")
	}
}

// completeAsTyped sets o up as the command does from what a user types:
// the command's own flags (defaults included) parsed from flags, then
// Complete with the pods and Validate.
func completeAsTyped(t *testing.T, o *ClusterOptions, pods []string, flags ...string) {
	t.Helper()
	cmd := &cobra.Command{}
	o.TraceOptions.AddFlags(cmd)
	o.AddFlags(cmd)
	if err := cmd.ParseFlags(flags); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(context.Background(), pods); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
}
