//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// timedRun is one `kubectl podtrace … --timing` as the limited user: when
// the verdict line appeared on its stdout and when it exited (from the
// test's start of the command: kubectl's and the plugin's own start-up
// included), and the plugin's timeline (from the plugin's start).
type timedRun struct {
	verdict, exit time.Duration
	marks         []timingMark
	warm          bool // a warm rerun: lingering agents served it
	// busy and all are the CPU time of the whole machine (cluster, both
	// nodes and the plugin: they share it) spent and elapsed from the
	// command's start to its exit (/proc/stat).
	busy, all time.Duration
}

// machineCPU reads the machine's CPU time from /proc/stat: busy (user,
// nice, system, irq, softirq, steal) and all (busy, idle and iowait),
// summed over the CPUs. The kernel counts in USER_HZ, 100 a second on
// Linux (getconf CLK_TCK).
func machineCPU(t *testing.T) (busy, all time.Duration) {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		t.Fatalf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			t.Fatalf("/proc/stat: %q: %v", line, err)
		}
		v[i] = n
	}
	tick := time.Second / 100
	busyTicks := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return time.Duration(busyTicks) * tick, time.Duration(busyTicks+v[3]+v[4]) * tick
}

type timingMark struct {
	at        time.Duration
	who, what string
}

// timingLine is what --timing prints: "podtrace: timing:   1.380 s (+ 1181 ms) pod-b    attached (attempt 6)".
var timingLine = regexp.MustCompile(`^podtrace: timing: +([0-9.]+) s \(\+ *[0-9]+ ms\) (\S+) +(.*)$`)

// timedTrace runs the trace with -o json --timing and times it; the
// trace must reach a verdict.
func timedTrace(t *testing.T, args ...string) timedRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", podtraceArgs(append(args, "-o", "json", "--timing")...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+userConfig)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var run timedRun
	var errText strings.Builder
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			errText.WriteString(sc.Text() + "\n")
			if m := timingLine.FindStringSubmatch(sc.Text()); m != nil {
				s, _ := strconv.ParseFloat(m[1], 64)
				run.marks = append(run.marks, timingMark{at: time.Duration(s * float64(time.Second)), who: m[2], what: m[3]})
			}
		}
	}()
	busy0, all0 := machineCPU(t)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var last string
	for sc.Scan() {
		last = sc.Text()
		if run.verdict == 0 && strings.Contains(last, `"kind":"verdict"`) {
			run.verdict = time.Since(start)
		}
	}
	wg.Wait()
	err = cmd.Wait()
	run.exit = time.Since(start)
	busy1, all1 := machineCPU(t)
	run.busy, run.all = busy1-busy0, all1-all0
	run.warm = strings.Contains(errText.String(), "warm rerun on the agents of session")
	if run.verdict == 0 {
		t.Fatalf("kubectl podtrace %s printed no verdict (%v); last line %q\n%s", strings.Join(args, " "), err, last, errText.String())
	}
	if len(run.marks) == 0 {
		t.Fatalf("kubectl podtrace %s --timing printed no timing lines:\n%s", strings.Join(args, " "), errText.String())
	}
	return run
}

// phase is when the last mark of the run whose text starts with what
// happened (from the plugin's start); ok is false when there is none.
func (r timedRun) phase(what string) (time.Duration, bool) {
	var at time.Duration
	ok := false
	for _, m := range r.marks {
		if strings.HasPrefix(m.what, what) {
			at, ok = m.at, true
		}
	}
	return at, ok
}

// debugTime is the peer: kubectl debug injecting one ephemeral container
// with the agent image into e2e/POD, waiting for it to run and
// attaching to it, as a user who debugs by hand would (-i; the agent
// exits at the end of its input, which kubectl closes at once). As the
// admin: the admission policy lets the limited user add the agent's own
// container only; the injection costs the same.
func debugTime(t *testing.T, pod string) time.Duration {
	t.Helper()
	name := uniqueName("dbg")
	s := time.Now()
	mustKubectl(t, adminConfig, "debug", pod, "-n", "e2e", "-i", "--container="+name, "--image="+agentImage,
		"--image-pull-policy=Never", "--profile=netadmin", "--", "/podtrace-agent", "--role", "pod", "--control", "stdin", "--deadline", "10s")
	return time.Since(s)
}

// settle waits before a cold run (podtrace's or kubectl debug's) until
// the kubelet would start a container added to the pod at once. A pod
// worker starts a new container only from a runtime status newer than
// the pod's last sync (the kubelet's pod cache, GetNewerThan), and the
// status is refreshed by a relist, once a second: a container added to a
// pod the kubelet synced within the last relist period waits for the
// next one. The previous run's container exiting in the same pod is seen
// at the next relist and synced then: without the pause each run would
// wait for up to a second that a first trace of a pod does not, and a
// rerun within --linger does not either (it creates nothing). Measured
// on the e2e cluster: a container added 0.44 s after such a sync was
// created by the runtime 0.6 s later, at the next relist.
func settle() { time.Sleep(2500 * time.Millisecond) }

type durations []time.Duration

func (d durations) median() time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// spread is "median (min–max, n=N)".
func (d durations) String() string {
	if len(d) == 0 {
		return "none"
	}
	return fmt.Sprintf("%v (%v–%v, n=%d)", d.median().Round(time.Millisecond), slices.Min(d).Round(time.Millisecond),
		slices.Max(d).Round(time.Millisecond), len(d))
}

// logBreakdown prints where the time to the verdict goes: the medians of
// the plugin's steps over the runs.
func logBreakdown(t *testing.T, label string, runs []timedRun) {
	t.Helper()
	steps := []struct{ name, mark string }{
		{"pods, Service and nodes resolved (API reads)", "pods, Service and nodes resolved"},
		{"preflight passed (access reviews, dry runs)", "preflight passed"},
		{"last agent object added or created", ""},
		{"last agent attached (kubelet started it)", "attached"},
		{"all agents armed (hello)", "all agents armed"},
		{"probe outcome", "probe outcome"},
		{"every stream ended (stop, drain, bye)", "every stream ended"},
		{"verdict shown", "verdict shown"},
		{"teardown done", "teardown checked"},
	}
	var lines []string
	for _, s := range steps {
		var d durations
		for _, r := range runs {
			var at time.Duration
			var ok bool
			if s.mark == "" {
				a1, ok1 := r.phase("added")
				a2, ok2 := r.phase("created")
				at, ok = max(a1, a2), ok1 || ok2
			} else {
				at, ok = r.phase(s.mark)
			}
			if ok {
				d = append(d, at)
			}
		}
		lines = append(lines, fmt.Sprintf("  %-46s %v", s.name, d))
	}
	var startup durations
	for _, r := range runs {
		if at, ok := r.phase("verdict shown"); ok {
			startup = append(startup, r.verdict-at)
		}
	}
	lines = append(lines, fmt.Sprintf("  %-46s %v", "kubectl and plugin start-up, output (rest)", startup))
	// The launcher attaches when the pod status says the container runs
	// (a kubelet of 1.36 or later reports it at once), or, on older
	// kubelets or when the status is late, on an attempt of its own: each
	// failed attempt costs the API server and the kubelet CPU.
	early, agents, failed := 0, 0, 0
	for _, r := range runs {
		running := map[string]bool{}
		for _, m := range r.marks {
			switch {
			case strings.HasPrefix(m.what, "running in the pod status"):
				running[m.who] = true
			case strings.HasPrefix(m.what, "attached"):
				agents++
				if !running[m.who] {
					early++
				}
				var n int
				if _, err := fmt.Sscanf(m.what, "attached (attempt %d)", &n); err == nil {
					failed += n - 1
				}
			}
		}
	}
	lines = append(lines, fmt.Sprintf("  agents attached before the pod status said they ran: %d of %d; failed attach attempts: %d in %d runs", early, agents, failed, len(runs)))
	// How much of the machine a run takes: near all of it means the
	// runtime's work, not waits, bounds the time.
	var busy durations
	var share []float64
	for _, r := range runs {
		if r.all > 0 {
			busy = append(busy, r.busy)
			share = append(share, float64(r.busy)/float64(r.all))
		}
	}
	slices.Sort(share)
	if len(share) > 0 {
		lines = append(lines, fmt.Sprintf("  CPU time the machine spent during a run (start to exit): %v; busy %.0f%% of its CPU time (median)", busy, 100*share[len(share)/2]))
	}
	t.Logf("%s: where the time to the verdict goes (from the plugin's start; medians, min–max):\n%s", label, strings.Join(lines, "\n"))
}
