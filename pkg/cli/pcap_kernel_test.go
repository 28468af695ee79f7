package cli

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// TestPcapOpensInTsharkAndMatchesJSON traces across the lab with -o json and
// --pcap, and checks what tshark reports of the file against the JSON of the
// same run: the same frames on the same interfaces (one per hop, named
// node/netns/iface) at the same nanosecond, the same ARP fields and ICMP
// types, and the probe's frames commented with their hop and fingerprint.
func TestPcapOpensInTsharkAndMatchesJSON(t *testing.T) {
	nettest.RequireRoot(t)
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatalf("tshark is needed to read the pcapng back: apt-get install -y tshark (preseed wireshark-common/install-setuid false): %v", err)
	}
	file := filepath.Join(t.TempDir(), "trace.pcapng")
	r := podtrace(t, "lab", "-o", "json", "--pcap", file)
	if r.code != 0 {
		t.Fatalf("lab exited %d", r.code)
	}

	// What the JSON says, one key per frame: interface, time, ARP, ICMP.
	type agent struct{ ID, Name, Role, Node string }
	var head struct{ Agents []agent }
	var want []string
	wantComment := map[string]string{} // frame key → "probe … fp …" expected in its comment
	ifaces := map[string]bool{}
	for i, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var h struct {
			Kind   string `json:"kind"`
			Agent  string `json:"agent"`
			Iface  string `json:"iface"`
			Probe  string `json:"probeId"`
			Reply  bool   `json:"reply"`
			Packet *struct {
				TS  time.Time `json:"ts"`
				FP  string    `json:"fp"`
				ARP *struct {
					Op       string `json:"op"`
					SenderIP string `json:"senderIp"`
					TargetIP string `json:"targetIp"`
				} `json:"arp"`
				L4 *struct {
					Proto string `json:"proto"`
				} `json:"l4"`
			} `json:"packet"`
		}
		if err := json.Unmarshal([]byte(l), &h); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if i == 0 {
			if err := json.Unmarshal([]byte(l), &head); err != nil || len(head.Agents) == 0 {
				t.Fatalf("no agents in the header: %v\n%s", err, l)
			}
		}
		if h.Kind != "hop" || h.Packet == nil {
			continue
		}
		var a *agent
		for i := range head.Agents {
			if head.Agents[i].ID == h.Agent || head.Agents[i].Name == h.Agent {
				a = &head.Agents[i]
			}
		}
		if a == nil {
			t.Fatalf("hop of unknown agent %q", h.Agent)
		}
		ns := "root"
		if a.Role == "pod" {
			ns = a.Name
		}
		name := a.Node + "/" + ns + "/" + h.Iface
		ifaces[name] = true
		key := fmt.Sprintf("%s %d.%09d", name, h.Packet.TS.Unix(), h.Packet.TS.Nanosecond())
		switch {
		case h.Packet.ARP != nil:
			op := map[string]string{"who-has": "1", "is-at": "2"}[h.Packet.ARP.Op]
			key += fmt.Sprintf(" arp %s %s→%s", op, h.Packet.ARP.SenderIP, h.Packet.ARP.TargetIP)
		case h.Packet.L4 != nil && h.Packet.L4.Proto == "icmp":
			typ := "8"
			if h.Reply {
				typ = "0"
			}
			key += " icmp " + typ
		}
		want = append(want, key)
		if h.Probe != "" {
			wantComment[key] = fmt.Sprintf("probe %s %s · hop ", h.Probe, map[bool]string{false: "request", true: "answer"}[h.Reply])
			wantComment[key+" fp"] = "· fp " + h.Packet.FP
		}
	}

	// What tshark says.
	out, err := exec.Command(tshark, "-r", file, "-T", "fields", "-E", "separator=|",
		"-e", "frame.interface_name", "-e", "frame.time_epoch", "-e", "arp.opcode", "-e", "arp.src.proto_ipv4",
		"-e", "arp.dst.proto_ipv4", "-e", "icmp.type", "-e", "frame.comment").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	var got []string
	gotIfaces := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "|")
		if len(f) != 7 {
			t.Fatalf("tshark line %q", l)
		}
		gotIfaces[f[0]] = true
		key := f[0] + " " + f[1]
		switch {
		case f[2] != "":
			key += fmt.Sprintf(" arp %s %s→%s", f[2], f[3], f[4])
		case f[5] != "":
			key += " icmp " + f[5]
		}
		got = append(got, key)
		if c, ok := wantComment[key]; ok {
			if !strings.Contains(f[6], c) || !strings.Contains(f[6], wantComment[key+" fp"]) || !strings.Contains(f[6], f[0]) {
				t.Errorf("frame %s: comment %q; want the probe, hop, interface and %q", key, f[6], wantComment[key+" fp"])
			}
		} else if f[6] != "" {
			t.Errorf("frame %s: comment %q on a frame that is not the probe's", key, f[6])
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tshark frames\n%s\n\nJSON frames\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(gotIfaces) != len(ifaces) || len(ifaces) < 5 {
		t.Errorf("interfaces in the file %v; JSON hops on %v", gotIfaces, ifaces)
	}
	var arp, echo int
	for _, k := range got {
		arp += strings.Count(k, " arp ")
		echo += strings.Count(k, " icmp ")
	}
	if arp < 8 || echo != 10 {
		t.Errorf("%d ARP and %d ICMP frames; want the who-has flood and is-at (≥8) and the echo at 5 hops each way (10)", arp, echo)
	}
	t.Logf("tshark read %d frames on %d interfaces: %d ARP, %d ICMP", len(got), len(gotIfaces), arp, echo)
}
