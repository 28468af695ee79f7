package cli

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// TestHeadersOnlyUnlessPayload: application data between two lab pods (a
// TCP connection from pod-a to pod-b writing a random marker) traced
// passively with --pcap and --save. By default neither the pcapng file nor
// the recorded streams hold a byte of the marker, and tshark reads each
// data segment as cut after its TCP header: captured length = frame length
// − TCP payload length (tshark's own tcp.len, from the IP header), the
// frame length still the one on the wire. With --payload the marker is in
// the file and tshark shows it as the TCP payload.
func TestHeadersOnlyUnlessPayload(t *testing.T) {
	tshark := nettest.RequireTool(t, "tshark", "apt-get install -y tshark (preseed wireshark-common/install-setuid false)")
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	const port = 7777
	var ln net.Listener
	inNetNS(t, b.Path, func() (err error) {
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(port))
		return err
	})
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	rnd := make([]byte, 8)
	_, _ = rand.Read(rnd)
	marker := []byte("PODTRACE-MARKER-" + hex.EncodeToString(rnd))
	var c net.Conn
	inNetNS(t, a.Path, func() (err error) {
		c, err = net.DialTimeout("tcp", net.JoinHostPort(b.IP, strconv.Itoa(port)), 10*time.Second)
		return err
	})
	defer c.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	defer func() { close(stop); <-done }()
	go func() {
		defer close(done)
		for {
			if _, err := c.Write(append(append([]byte(nil), marker...), '\n')); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	for _, payload := range []bool{false, true} {
		name := "default"
		if payload {
			name = "payload"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			file, saved := filepath.Join(dir, "trace.pcapng"), filepath.Join(dir, "rec")
			args := []string{"local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", l.Nodes[0].NetNS,
				"--passive", "--duration", "1s", "--filter", "tcp port " + strconv.Itoa(port), "-o", "json",
				"--pcap", file, "--save", saved}
			if payload {
				args = append(args, "--payload")
			}
			if r := podtrace(t, args...); r.code != 0 {
				t.Fatalf("exit %d", r.code)
			}
			// What the run wrote is its user's only.
			outs, _ := filepath.Glob(filepath.Join(saved, "*"))
			for _, f := range append(outs, file, saved) {
				want := os.FileMode(0o600)
				if f == saved {
					want = 0o700
				}
				fi, err := os.Lstat(f)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != want {
					t.Errorf("%s: mode %v; want %v", f, fi.Mode().Perm(), want)
				}
			}
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			frames := savedFrames(t, saved)
			inFile, inSaved := bytes.Contains(raw, marker), 0
			for _, f := range frames {
				if bytes.Contains(f, marker) {
					inSaved++
				}
			}
			out, err := exec.Command(tshark, "-r", file, "-Y", "tcp.len > 0", "-T", "fields", "-E", "separator=|",
				"-e", "frame.len", "-e", "frame.cap_len", "-e", "tcp.len", "-e", "tcp.payload").Output()
			if err != nil {
				t.Fatalf("tshark: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) == 0 || lines[0] == "" {
				t.Fatalf("tshark found no TCP segment with data in %s", file)
			}
			wantHex := hex.EncodeToString(marker)
			for _, l := range lines {
				f := strings.Split(l, "|")
				if len(f) != 4 {
					t.Fatalf("tshark line %q", l)
				}
				flen, _ := strconv.Atoi(f[0])
				caplen, _ := strconv.Atoi(f[1])
				tcplen, _ := strconv.Atoi(f[2])
				switch {
				case !payload && (caplen != flen-tcplen || tcplen == 0):
					t.Errorf("tshark: frame of %d bytes with %d bytes of TCP data captured as %d; want %d (headers only)", flen, tcplen, caplen, flen-tcplen)
				case payload && (caplen != flen || !strings.Contains(strings.ReplaceAll(f[3], ":", ""), wantHex)):
					t.Errorf("tshark: frame of %d bytes captured as %d, payload %q; want the whole frame with the marker %s", flen, caplen, f[3], wantHex)
				}
			}
			if payload != inFile || (payload && inSaved == 0) || (!payload && inSaved != 0) {
				t.Errorf("--payload %v: marker in the pcapng file: %v, in %d of %d recorded frames", payload, inFile, inSaved, len(frames))
			}
			t.Logf("--payload %v: %d data segments read by tshark, marker in the file: %v, in %d of %d recorded frames", payload, len(lines), inFile, inSaved, len(frames))
		})
	}
}

// savedFrames returns the frames of every packet line of a recording.
func savedFrames(t *testing.T, dir string) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no streams recorded in %s: %v", dir, err)
	}
	var frames [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			var e struct {
				Packet *struct {
					Frame []byte `json:"frame"`
				} `json:"packet"`
			}
			if err := json.Unmarshal(l, &e); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if e.Packet != nil {
				frames = append(frames, e.Packet.Frame)
			}
		}
	}
	return frames
}
