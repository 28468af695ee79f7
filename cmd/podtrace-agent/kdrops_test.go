package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// The capabilities a node agent pod gets with --kernel-drops are enough,
// and needed: run with exactly NET_RAW, NET_ADMIN, BPF and PERFMON (no
// SYS_ADMIN, no SYS_RESOURCE), as deploy/ grants, the agent arms the
// kernel drops program; with the capture capabilities only, its hello
// says it is not armed and names the two it lacks, and the agent runs
// on.
func TestKernelDropsArmWithBPFAndPerfmonOnly(t *testing.T) {
	nettest.RequireRoot(t)
	setpriv := nettest.RequireTool(t, "setpriv", "apt-get install util-linux")
	ns := nettest.NS(t, nettest.Prefix()+"-kd")
	for _, c := range []struct {
		caps  string
		armed bool
	}{
		{"+net_raw,+net_admin,+bpf,+perfmon", true},
		{"+net_raw,+net_admin", false},
	} {
		caps := "-all," + c.caps
		out, err := exec.Command("ip", "netns", "exec", ns, setpriv, "--inh-caps="+caps, "--ambient-caps="+caps, "--bounding-set="+caps,
			agentBin, "--role", "node", "--hosts", "10.1.0.1,10.1.0.2", "--trace-probe", "udp", "--probe-id", "40000", "--port", "9000",
			"--kernel-drops", "--deadline", "2s").Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.caps, err, out)
		}
		var hello *wire.Hello
		var stats *wire.Stats
		for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
			var e wire.Envelope
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%s: %v: %s", c.caps, err, line)
			}
			if e.Hello != nil {
				hello = e.Hello
			}
			if e.Stats != nil {
				stats = e.Stats
			}
		}
		if hello == nil || hello.KernelDrops == nil || stats == nil {
			t.Fatalf("%s: no hello with kernelDrops, or no stats:\n%s", c.caps, out)
		}
		k := hello.KernelDrops
		t.Logf("capabilities %v: %+v", hello.Caps, k)
		if k.Armed != c.armed {
			t.Errorf("%s: armed %v; want %v (%s)", c.caps, k.Armed, c.armed, k.Why)
		}
		if !c.armed && !strings.Contains(k.Why, "CAP_BPF and CAP_PERFMON") {
			t.Errorf("%s: why %q does not name the capabilities", c.caps, k.Why)
		}
		if (stats.KernelDrops != nil) != c.armed {
			t.Errorf("%s: stats kernelDrops %+v", c.caps, stats.KernelDrops)
		}
	}
}
