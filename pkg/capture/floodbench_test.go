package capture

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFlood floods a veth with UDP for a few seconds and captures it on
// the receiving end with this package and, at the same time on the same
// veth, with `tcpdump -i VETH -w /dev/null`, and logs what each got.
// It runs only with PODTRACE_FLOOD=1 (go test -run Flood -v).
func TestFlood(t *testing.T) {
	if os.Getenv("PODTRACE_FLOOD") != "1" {
		t.Skip("set PODTRACE_FLOOD=1 to run the flood comparison")
	}
	dur := 3 * time.Second
	if s := os.Getenv("PODTRACE_FLOOD_SECONDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			dur = time.Duration(n) * time.Second
		}
	}
	tov := DefaultBlockTimeout
	if s := os.Getenv("PODTRACE_FLOOD_BLOCK_TIMEOUT"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			tov = d
		}
	}
	nsA, nsB, a, b := pair(t)
	h := openIn(t, nsB, Config{Ifindex: ifindex(t, nsB, b), Filter: udpPortFilter(t, 9000), BlockTimeout: tov})

	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump not installed (apt-get install -y tcpdump)")
	}
	td := exec.Command("ip", "netns", "exec", nsB, tcpdump, "-i", b, "-w", "/dev/null")
	var tdErr bytes.Buffer
	stderr, _ := td.StderrPipe()
	if err := td.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = td.Process.Kill(); _ = td.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() { // wait until tcpdump's socket is open
		tdErr.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "listening on") {
			break
		}
	}
	tdDone := make(chan struct{})
	go func() {
		for sc.Scan() {
			tdErr.WriteString(sc.Text() + "\n")
		}
		close(tdDone)
	}()

	var captured, cpuNs uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // reader on its own locked thread, for its CPU time
		defer wg.Done()
		lockThread()
		cpu0 := threadCPU()
		for {
			n, err := h.Read(50*time.Millisecond, func(Frame) {})
			captured += uint64(n)
			select {
			case <-stop:
				if n == 0 || err != nil {
					cpuNs = uint64(threadCPU() - cpu0)
					return
				}
			default:
			}
		}
	}()

	rx0 := rxPackets(t, nsB, b)
	f := startFlood(t, nsA, a, 64)
	t0 := time.Now()
	time.Sleep(dur)
	f.Stop()
	el := time.Since(t0)
	time.Sleep(200 * time.Millisecond) // let the last block retire
	close(stop)
	wg.Wait()
	rx := rxPackets(t, nsB, b) - rx0
	_ = td.Process.Signal(syscall.SIGINT)
	<-tdDone
	_ = td.Wait()
	_ = h.Close()
	st, _ := h.Stats()

	sent := f.sent.Load()
	t.Logf("flood %v: sent %d datagrams (%.0f pps), veth %s received %d", el.Round(time.Millisecond), sent, float64(sent)/el.Seconds(), b, rx)
	t.Logf("capture (TPACKET_V3, %d x %d B ring, block timeout %v, snaplen %d): %d frames per block; captured %d (%.0f pps, %.1f%% of received), kernel packets %d drops %d freezes %d, reader CPU %.0f ns/frame",
		DefaultNumBlocks, DefaultBlockSize, tov, DefaultSnaplen, captured/max(h.blocks, 1), captured, float64(captured)/el.Seconds(), 100*float64(captured)/float64(rx), st.Packets, st.Drops, st.Freezes,
		float64(cpuNs)/float64(max(captured, 1)))
	got := parseTcpdump(tdErr.String())
	t.Logf("tcpdump -i %s -w /dev/null: captured %d (%.1f%% of received), received by filter %d, dropped by kernel %d",
		b, got["captured"], 100*float64(got["captured"])/float64(rx), got["received by filter"], got["dropped by kernel"])
}

var tcpdumpRE = regexp.MustCompile(`(?m)^(\d+) packets? (captured|received by filter|dropped by kernel)`)

func parseTcpdump(s string) map[string]uint64 {
	out := map[string]uint64{}
	for _, m := range tcpdumpRE.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		out[m[2]] = n
	}
	return out
}
