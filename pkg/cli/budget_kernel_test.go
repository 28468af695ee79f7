package cli

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

// traceHead is the first line of -o json, as a consumer reads it.
type traceHead struct {
	Kind          string `json:"kind"`
	ReceivedBytes int64  `json:"receivedBytes"`
	Agents        []struct {
		Name          string `json:"name"`
		ReceivedBytes int64  `json:"receivedBytes"`
		Cut           *struct {
			Budget      int64  `json:"budget"`
			BudgetLines uint64 `json:"budgetLines"`
		} `json:"cut"`
	} `json:"agents"`
}

// Beside a flood between the traced pods, active and passive traces
// stream within the agents' byte budget: what the plugin received is
// bounded by the budget and how long the agents ran, whatever the flood;
// the trace says what was cut; the probe is still delivered.
func TestTracesBesideAFloodStayWithinTheBudget(t *testing.T) {
	const budget = 64 << 10
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
	flooded := make(chan int)
	go func() {
		n, buf, to := 0, make([]byte, 64), &net.UDPAddr{IP: net.ParseIP(b.IP), Port: 9}
		for {
			select {
			case <-stop:
				flooded <- n
				return
			default:
			}
			for range 256 {
				if _, err := udp.WriteTo(buf, to); err == nil {
					n++
				}
			}
		}
	}()
	defer func() {
		close(stop)
		t.Logf("the flood sent %d datagrams", <-flooded)
	}()
	time.Sleep(200 * time.Millisecond)

	for _, tc := range []struct {
		name    string
		args    []string
		want    string
		mustCut bool // the filter admits the flood: the budget must cut it
	}{
		{"active", nil, "delivered", false},
		// The budget keeps a reserve for small flows, but a slow agent may
		// still cut a probe frame: then the verdict must say lines were cut.
		{"active, a filter that admits the flood", []string{"--filter", "host " + a.IP + " and host " + b.IP}, "", true},
		{"passive", []string{"--passive", "--duration", "2s"}, "observed", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := podtrace(t, append([]string{"local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node,
				"--budget", "64Ki", "-o", "json"}, tc.args...)...)
			took := time.Since(start)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			var head traceHead
			if err := json.Unmarshal([]byte(lines[0]), &head); err != nil || head.Kind != "trace" {
				t.Fatalf("first line %v: %s", err, lines[0])
			}
			v := parseJSON(t, r.stdout)
			last := v[len(v)-1]
			switch {
			case tc.want != "" && last.Result != tc.want:
				t.Errorf("verdict %+v; want %s beside the flood", last, tc.want)
			case tc.want == "" && last.Result != "delivered" && !strings.Contains(lines[len(lines)-1], "lines were cut at"):
				t.Errorf("verdict %s without the evidence that lines were cut:\n%s", last.Result, lines[len(lines)-1])
			}
			// Each agent: one second of burst, then the budget for as long
			// as it ran (at most the command's time), plus its control
			// lines (hello and two topology snapshots of a small lab).
			bound := int64(float64(len(head.Agents)) * (budget*(1+took.Seconds()) + 64<<10))
			t.Logf("received %d bytes in %v (bound %d)", head.ReceivedBytes, took.Round(time.Millisecond), bound)
			if head.ReceivedBytes == 0 || head.ReceivedBytes > bound {
				t.Errorf("received %d bytes; want some, at most %d", head.ReceivedBytes, bound)
			}
			var cut uint64
			for _, ag := range head.Agents {
				if ag.Cut != nil {
					cut += ag.Cut.BudgetLines
					if ag.Cut.Budget != budget {
						t.Errorf("%s: budget %d, want %d", ag.Name, ag.Cut.Budget, budget)
					}
				}
			}
			warned := strings.Contains(r.stdout, `its byte budget (64 KiB/s, --budget) cut `)
			if cut > 0 != warned {
				t.Errorf("%d lines cut; a warning saying so: %v", cut, warned)
			}
			if tc.mustCut && cut == 0 {
				t.Errorf("nothing cut, though the filter admits the flood")
			}
			if !strings.Contains(r.stderr, "podtrace: received ") {
				t.Errorf("no received line on stderr")
			}
		})
	}
}
