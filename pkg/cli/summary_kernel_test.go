//go:build linux

package cli

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// pluginBinary is kubectl-podtrace from $PODTRACE_BIN (make test), else
// built for the test: the plugin runs as a process of its own so that
// its peak memory can be read.
func pluginBinary(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("PODTRACE_BIN"); dir != "" {
		return filepath.Join(dir, "kubectl-podtrace")
	}
	return goBuild(t, "../../cmd/kubectl-podtrace")
}

func goBuild(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// rxPackets reads an interface's received-packets counter in a namespace.
func rxPackets(t *testing.T, ns, dev string) uint64 {
	t.Helper()
	s := strings.TrimSpace(nettest.In(t, ns, "cat", "/sys/class/net/"+dev+"/statistics/rx_packets"))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("rx_packets of %s in %s: %q", dev, ns, s)
	}
	return n
}

// readStream reads a saved observation stream.
func readStream(t *testing.T, path string) (lines []*wire.Envelope, size int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	r := wire.NewReader(bufio.NewReader(f))
	for {
		e, err := r.Next()
		if err != nil {
			break
		}
		lines = append(lines, e)
	}
	return lines, st.Size()
}

// A passive trace on pods flooded at the flood tool's full rate: every
// agent goes over its threshold and summarizes; the streams, the output
// and the plugin's memory stay small; the counts add up with the kernel's.
func TestPassiveTraceOnAFloodSummarizes(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	node := l.Nodes[0].NetNS
	plugin, flood := pluginBinary(t), goBuild(t, "../../bench/udpflood")

	// The flood ends before the trace does, so that every frame the
	// kernel passed has been read when the agents stop: their counts must
	// then add up exactly.
	rx0 := rxPackets(t, b.NetNS, "eth0")
	fl := exec.Command("ip", "netns", "exec", a.NetNS, flood, "--dst", b.IP, "--port", "9000", "--duration", "6s")
	var floodOut strings.Builder
	fl.Stdout = &floodOut
	if err := fl.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stopFlood := func() {
		if !stopped {
			stopped = true
			_ = fl.Process.Kill()
			_ = fl.Wait()
		}
	}
	t.Cleanup(stopFlood)

	save := t.TempDir()
	cmd := exec.Command(plugin, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node, "--passive", "--duration", "8s",
		"--summarize-above", "500", "-o", "json", "--save", save, "--agent-binary", agentBinary, "--color", "never")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	stopFlood()
	t.Logf("flood: %s", strings.TrimSpace(floodOut.String()))
	rx1 := rxPackets(t, b.NetNS, "eth0")
	t.Logf("stderr:\n%s", stderr.String())
	if err != nil {
		t.Fatalf("plugin: %v", err)
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
	t.Logf("plugin peak RSS %d MiB, -o json %d bytes", rss/1024, stdout.Len())

	// What the user reads: who summarized and the flood as a flow seen
	// at every hop toward pod-b.
	type flowHop struct {
		Agent, Iface, Role, Dir string
		Packets                 uint64
	}
	type line struct {
		Kind    string `json:"kind"`
		Agent   string `json:"agent"`
		Packets uint64 `json:"packets"`
		Summ    int    `json:"summaries"`
		Src     string `json:"src"`
		Dst     string `json:"dst"`
		Proto   string `json:"proto"`
		DPort   int    `json:"dport"`
		Toward  bool   `json:"toward"`
		Hops    []flowHop
		Result  string `json:"result"`
		Reason  string `json:"reason"`
		Msg     string `json:"msg"`
	}
	summarized := map[string]uint64{}
	var floodHops []flowHop
	var verdict line
	warned := 0
	for _, s := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var x line
		if strings.HasPrefix(s, `{"kind":"trace"`) {
			continue // its src and dst are objects
		}
		if err := json.Unmarshal([]byte(s), &x); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, s)
		}
		switch x.Kind {
		case "summarized":
			summarized[x.Agent] = x.Packets
		case "flow":
			if x.Proto == "udp" && x.Src == a.IP && x.Dst == b.IP && x.DPort == 9000 && x.Toward {
				floodHops = x.Hops
			}
		case "warning":
			if strings.Contains(x.Msg, " summarized from ") && strings.Contains(x.Msg, "not in --pcap") {
				warned++
			}
		case "verdict":
			verdict = x
		}
	}
	if len(summarized) != 3 {
		t.Errorf("agents that summarized: %v; want pod-a, pod-b and the node", summarized)
	}
	if warned != len(summarized) {
		t.Errorf("%d warnings say an agent summarized; want one per summarizing agent (%d)", warned, len(summarized))
	}
	var where []string
	for _, h := range floodHops {
		where = append(where, h.Agent+":"+h.Iface+":"+h.Dir)
	}
	want := []string{a.NetNS + ":eth0:out", node + ":" + a.HostVeth + ":in", node + ":" + b.HostVeth + ":out", b.NetNS + ":eth0:in"}
	for _, w := range want {
		if !strings.Contains(strings.Join(where, " "), w) {
			t.Errorf("the flood's flow was counted at %v; want it at %v", where, want)
			break
		}
	}
	if verdict.Result != "observed" || !strings.Contains(verdict.Reason, "summarized flows") {
		t.Errorf("verdict %q %q; want observed, naming the summarized flows", verdict.Result, verdict.Reason)
	}

	// The streams as the plugin received them (saved with --save).
	files, _ := filepath.Glob(filepath.Join(save, "*.jsonl"))
	var total int64
	for _, f := range files {
		lines, size := readStream(t, f)
		total += size
		var st *wire.Stats
		var sum, packetLines, summaries uint64
		id := ""
		for _, e := range lines {
			id = e.Agent
			switch e.Kind {
			case wire.KindStats:
				st = e.Stats
			case wire.KindSummary:
				summaries++
				sum += e.Summary.Packets
			case wire.KindPacket:
				packetLines++
			}
		}
		if st == nil {
			t.Errorf("%s: no stats line", f)
			continue
		}
		t.Logf("%s: %d bytes, %d packet lines, %d summaries; stats %+v", id, size, packetLines, summaries, *st)
		// The kernel passed Packets frames and dropped Drops of them;
		// every other one was written, summarized or left out at exit.
		if got := st.Emitted + st.Summarized + st.Filtered + st.CutPackets; got != st.Packets-st.Drops {
			t.Errorf("%s: emitted %d + summarized %d + left out %d + cut by the budget %d = %d; the kernel passed %d and dropped %d (%d read)",
				id, st.Emitted, st.Summarized, st.Filtered, st.CutPackets, got, st.Packets, st.Drops, st.Packets-st.Drops)
		}
		if sum != st.Summarized || st.Emitted != packetLines {
			t.Errorf("%s: summaries count %d frames, stats %d; %d packet lines, stats %d", id, sum, st.Summarized, packetLines, st.Emitted)
		}
		if st.Emitted > 2*500 {
			t.Errorf("%s: %d packet lines; over 500 frames/s the agent should have summarized", id, st.Emitted)
		}
		if id == b.NetNS {
			// pod-b's agent captures its eth0: never more frames than
			// eth0 received while the trace ran.
			if st.Packets > rx1-rx0 {
				t.Errorf("pod-b's kernel counters: %d frames captured, but eth0 received only %d", st.Packets, rx1-rx0)
			}
			if st.Summarized == 0 {
				t.Errorf("pod-b summarized nothing")
			}
		}
	}
	t.Logf("streams: %d bytes in all; pod-b eth0 received %d frames meanwhile", total, rx1-rx0)
	// Bounds with a wide margin: 3 agents × (500 packet lines + a few
	// summaries a second) is well under 2 MB; streaming every frame of the
	// flood is hundreds of MB.
	if total > 8<<20 {
		t.Errorf("the agents streamed %d bytes; want under 8 MiB", total)
	}
	if stdout.Len() > 4<<20 {
		t.Errorf("-o json wrote %d bytes; want under 4 MiB", stdout.Len())
	}
	// Streaming the flood's frames would take hundreds of MiB; its
	// summaries take tens. The race detector multiplies memory (make race
	// runs this test with a -race plugin).
	limit := int64(300 << 10)
	if raceBuild {
		limit *= 5
	}
	if rss > limit {
		t.Errorf("plugin peak RSS %d MiB; want under %d MiB", rss/1024, limit>>10)
	}
	if len(files) != 3 {
		t.Errorf("saved %d streams; want 3", len(files))
	}
}
