package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// kernelVerdict is the verdict's kernel drop and the node agent's
// kernel drop reasons program, as a JSON consumer reads them.
type kernelVerdict struct {
	Result string `json:"result"`
	Answer string `json:"answer"`
	Kernel *struct {
		Place    string `json:"place"`
		Netns    string `json:"netns"`
		Iface    string `json:"iface"`
		Probe    string `json:"probe"`
		Reason   string `json:"reason"`
		Code     uint32 `json:"code"`
		Location string `json:"location"`
		Text     string `json:"text"`
	} `json:"kernel"`
	Evidence []string `json:"evidence"`
}

type kernelAgents struct {
	Probe struct {
		ID int `json:"id"`
	} `json:"probe"`
	Agents []struct {
		Name        string `json:"name"`
		KernelDrops *struct {
			Armed    bool   `json:"armed"`
			Why      string `json:"why"`
			LoadTime int64  `json:"loadTime"`
		} `json:"kernelDrops"`
		Stats []struct {
			KernelDrops *struct {
				Examined, Matched, Lost, Written uint64
			} `json:"kernelDrops"`
		} `json:"stats"`
	} `json:"agents"`
}

// kernelTrace runs a local trace with --kernel-drops and returns the
// verdict and the node agent's program state and counters.
func kernelTrace(t *testing.T, want int, args ...string) (kernelVerdict, kernelAgents) {
	t.Helper()
	r := podtrace(t, append(args, "--kernel-drops", "-o", "json")...)
	if r.code != want {
		t.Fatalf("exit %d; want %d\n%s", r.code, want, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var v kernelVerdict
	var a kernelAgents
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[0]), &a); err != nil {
		t.Fatal(err)
	}
	return v, a
}

// nodeProgram is the node agent's program state; it must have been armed.
func nodeProgram(t *testing.T, a kernelAgents, node string) (examined, matched, lost, written uint64) {
	t.Helper()
	for _, ag := range a.Agents {
		if ag.Name != node {
			if ag.KernelDrops != nil {
				t.Errorf("agent %s has kernel drops: only node agents load the program", ag.Name)
			}
			continue
		}
		if ag.KernelDrops == nil || !ag.KernelDrops.Armed {
			t.Fatalf("node agent %s: kernel drops not armed: %+v", node, ag.KernelDrops)
		}
		t.Logf("program built, loaded and attached in %.1f ms", float64(ag.KernelDrops.LoadTime)/1e6)
		for _, s := range ag.Stats {
			if k := s.KernelDrops; k != nil {
				return k.Examined, k.Matched, k.Lost, k.Written
			}
		}
		t.Fatalf("node agent %s: no kernel drop counters in its stats", node)
	}
	t.Fatalf("no agent %s", node)
	return
}

// kernelReason is the value of a drop reason in the running kernel's own
// enum skb_drop_reason, read here from its BTF: the test's oracle for the
// name the trace gives a code.
func kernelReason(t *testing.T, name string) uint32 {
	t.Helper()
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &e); err != nil {
		t.Fatal(err)
	}
	for _, v := range e.Values {
		if v.Name == "SKB_DROP_REASON_"+name {
			return uint32(v.Value)
		}
	}
	t.Fatalf("the kernel's enum skb_drop_reason has no SKB_DROP_REASON_%s", name)
	return 0
}

// A UDP probe dropped by an nftables rule in pod-b's namespace, while a
// flood from pod-a to the same port is dropped by the same rule: the
// verdict names the kernel's reason (NETFILTER_DROP, with its code as the
// kernel's enum has it), the function and the namespace (pod-b's) and
// device; the node agent's program examined the flood's drops and
// reported only the probe's one packet.
func TestKernelDropsNameTheNetfilterDropOfTheProbeOnly(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	node := l.Nodes[0].NetNS
	nft(t, b.NetNS, `table inet podtrace_test {
  chain in { type filter hook input priority 0; udp dport 9000 drop; }
}`)
	ld := &load{t: t, stop: make(chan struct{})}
	ld.udpFlood(a.NetNS, b.IP, 9000, 20000)
	stopped := false
	defer func() {
		if !stopped {
			t.Log(ld.Stop())
		}
	}()

	saved := filepath.Join(t.TempDir(), "run")
	v, ag := kernelTrace(t, ExitLost, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node,
		"--proto", "udp", "--port", "9000", "--wait", "1s", "--save", saved)
	said := ld.Stop()
	stopped = true
	t.Log(said)
	k := v.Kernel
	if v.Result != "lost" || k == nil {
		t.Fatalf("verdict %+v; want lost with the kernel's drop", v)
	}
	if k.Reason != "NETFILTER_DROP" || k.Code != kernelReason(t, "NETFILTER_DROP") {
		t.Errorf("reason %s (%d); want NETFILTER_DROP, code %d as the kernel's BTF has it", k.Reason, k.Code, kernelReason(t, "NETFILTER_DROP"))
	}
	if k.Place != node || k.Netns != b.NetNS || k.Iface != "eth0" || k.Probe != "udp/1" || k.Location == "" {
		t.Errorf("kernel drop %+v; want reported by %s, in %s on eth0, of udp/1, with a location", k, node, b.NetNS)
	}
	if !strings.Contains(k.Text, "the kernel dropped it on "+node+": NETFILTER_DROP at "+k.Location) {
		t.Errorf("text %q", k.Text)
	}
	examined, matched, lost, written := nodeProgram(t, ag, node)
	t.Logf("program: examined %d drops, matched %d, lost %d, wrote %d", examined, matched, lost, written)
	if matched != written || lost != 0 {
		t.Errorf("matched %d, written %d, lost %d; want every match written", matched, written, lost)
	}
	// Every drop line the node agent wrote is of the probe's one
	// datagram: its source port, the NETFILTER_DROP in pod-b, or the
	// copy the bridge (held promiscuous by the agent) passed up to the
	// node's own stack, which drops it as for another host.
	probe := ag
	files, _ := filepath.Glob(filepath.Join(saved, "*-"+node+".jsonl"))
	if len(files) != 1 {
		t.Fatalf("saved streams of %s: %v", node, files)
	}
	b2, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var drops []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b2)), "\n") {
		var e struct {
			Kind string `json:"kind"`
			Drop *struct {
				Reason, Iface, Probe, Src string
				Sport                     int `json:"sport"`
			} `json:"drop"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if e.Kind != "drop" {
			continue
		}
		d := e.Drop
		drops = append(drops, d.Reason+" on "+d.Iface)
		if d.Sport != probe.Probe.ID || d.Probe != "udp/1" || d.Src != a.IP {
			t.Errorf("drop line %+v: not the probe's (source port %d)", d, probe.Probe.ID)
		}
		if d.Reason != "NETFILTER_DROP" && d.Reason != "OTHERHOST" {
			t.Errorf("drop line %+v: want NETFILTER_DROP or the promiscuous copy's OTHERHOST", d)
		}
	}
	t.Logf("drop lines: %q", drops)
	if uint64(len(drops)) != written {
		t.Errorf("%d drop lines, the program counted %d written", len(drops), written)
	}
	if examined < 1000 {
		t.Errorf("examined %d drops: the flood's were not dropped beside the probe (%s)", examined, said)
	}
}

// A TCP probe to a port nobody listens on, and a UDP one: the
// destination's kernel answers (RST, ICMP port unreachable) and frees the
// probe with NO_SOCKET; a probe to an address the node has no route to is
// dropped by the node with IP_INNOROUTES (ip_error), after it answered
// network unreachable.
func TestKernelDropsNameClosedPortsAndNoRoute(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	node := l.Nodes[0].NetNS
	for _, proto := range []string{"tcp", "udp"} {
		v, ag := kernelTrace(t, ExitDelivered, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node,
			"--proto", proto, "--port", "9001", "--wait", "1s")
		if v.Kernel == nil || v.Kernel.Reason != "NO_SOCKET" || v.Kernel.Code != kernelReason(t, "NO_SOCKET") || v.Kernel.Netns != b.NetNS {
			t.Errorf("%s: verdict %+v, kernel %+v; want NO_SOCKET in %s", proto, v, v.Kernel, b.NetNS)
		}
		if _, matched, _, written := nodeProgram(t, ag, node); matched == 0 || written != matched {
			t.Errorf("%s: matched %d, written %d; want the probe's drops, every one written", proto, matched, written)
		}
	}

	nettest.In(t, node, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	v, _ := kernelTrace(t, ExitLost, "local", "--from", a.NetNS, "--to", "192.168.60.7", "--node-netns", node, "--wait", "2s")
	if v.Result != "lost" || v.Kernel == nil || v.Kernel.Reason != "IP_INNOROUTES" || v.Kernel.Code != kernelReason(t, "IP_INNOROUTES") || v.Kernel.Netns != node {
		t.Errorf("no route: verdict %+v, kernel %+v; want lost, IP_INNOROUTES on %s", v, v.Kernel, node)
	}
	if v.Kernel != nil {
		t.Log(v.Kernel.Text)
	}
}
