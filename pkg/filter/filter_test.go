package filter

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
)

// hugeExpr returns an expression of about n instructions.
func hugeExpr(n int) string {
	var parts []string
	for i := 0; i < n/17; i++ {
		parts = append(parts, fmt.Sprintf("host 10.%d.%d.1", i/200, i%200))
	}
	return strings.Join(parts, " or ")
}

func TestCompileErrors(t *testing.T) {
	cases := []struct{ expr, err string }{
		{"tcp port 80 and foo", `filter "tcp port 80 and foo": unknown keyword "foo" at offset 16`},
		{"gateway router", `filter "gateway router": "gateway" is not supported (supported: ` + supportedList + `) at offset 0`},
		{"host 1.2.3.4 and pim", `filter "host 1.2.3.4 and pim": "pim" is not supported (supported: ` + supportedList + `) at offset 17`},
		{"host example.com", `filter "host example.com": hostname "example.com" is not supported (use an address) at offset 5`},
		{"host 1.2.3.4 or foo", `filter "host 1.2.3.4 or foo": hostname "foo" is not supported (use an address) at offset 16`},
		{"host", `filter "host": unexpected end of expression, expected a value after host`},
		{"host 1.2.3.256", `filter "host 1.2.3.256": invalid address "1.2.3.256" at offset 5`},
		{"port 70000", `filter "port 70000": number 70000 out of range (maximum 65535) at offset 5`},
		{"port foo", `filter "port foo": unknown port name "foo" at offset 5`},
		{"portrange 10", `filter "portrange 10": invalid port range "10" (want LOW-HIGH) at offset 10`},
		{"ip port 80", `filter "ip port 80": "ip port" is not supported (use tcp, udp or sctp) at offset 8`},
		{"tcp host 1.2.3.4", `filter "tcp host 1.2.3.4": "tcp" qualifier cannot be applied to host at offset 9`},
		{"ip6 host 1.2.3.4", `filter "ip6 host 1.2.3.4": IPv4 address "1.2.3.4" used with "ip6" at offset 9`},
		{"arp host fd00::1", `filter "arp host fd00::1": IPv6 address "fd00::1" used with "arp" at offset 9`},
		{"net 10.0.0.1/8", `filter "net 10.0.0.1/8": non-network bits set in "10.0.0.1/8" at offset 4`},
		{"net 10.0.0.0 mask 255.0.255.0", `filter "net 10.0.0.0 mask 255.0.255.0": non-contiguous netmask "255.0.255.0" is not supported at offset 18`},
		{"net foo", `filter "net foo": network name "foo" is not supported (use an address) at offset 4`},
		{"ether host 1.2.3.4", `filter "ether host 1.2.3.4": invalid ethernet address "1.2.3.4" at offset 11`},
		{"ip host 01:02:03:04:05:06", `filter "ip host 01:02:03:04:05:06": ethernet address "01:02:03:04:05:06" used in a non-ether expression at offset 8`},
		{"ether", `filter "ether": unexpected end of expression, expected host, src, dst, proto, broadcast or multicast after "ether"`},
		{"ether proto 100", `filter "ether proto 100": "ether proto 100" (an 802.3 length/LLC value) is not supported at offset 6`},
		{"ip broadcast", `filter "ip broadcast": "ip broadcast" is not supported (it needs the interface netmask); use "ether broadcast" at offset 3`},
		{"tcp proto 1", `filter "tcp proto 1": "proto" cannot follow "tcp" (use ether, ip or ip6) at offset 4`},
		{"proto \\foo", `filter "proto \\foo": unknown protocol name "foo" at offset 6`},
		{"ip proto 300", `filter "ip proto 300": number 300 out of range (maximum 255) at offset 9`},
		{"vlan 5000", `filter "vlan 5000": number 5000 out of range (maximum 4095) at offset 5`},
		{"(tcp", `filter "(tcp": unexpected end of expression, expected ")"`},
		{"tcp)", `filter "tcp)": unexpected ")", expected "and", "or" or end of expression at offset 3`},
		{"tcp and", `filter "tcp and": unexpected end of expression, expected a primitive`},
		{"tcp or or udp", `filter "tcp or or udp": unexpected "or", expected a primitive at offset 7`},
		{"tcp # udp", `filter "tcp # udp": unexpected character "#" at offset 4`},
		{"tcp \x00", `filter "tcp \x00": unexpected byte 0x00 at offset 4`},
		{"80", `filter "80": unexpected end of expression, expected a comparison operator`},
		{"tcp[13] & 2", `filter "tcp[13] & 2": unexpected end of expression, expected a comparison operator`},
		{"tcp[13:3] = 1", `filter "tcp[13:3] = 1": data size must be 1, 2 or 4, not 3 at offset 7`},
		{"tcp[1] / 0 = 1", `filter "tcp[1] / 0 = 1": division by zero`},
		{"tcp[1] << 40 = 1", `filter "tcp[1] << 40 = 1": shift by 40 is out of range`},
		{"ip[0 = 1", `filter "ip[0 = 1": unexpected "=", expected "]" at offset 5`},
		{strings.Repeat("(", 300) + "tcp" + strings.Repeat(")", 300), `filter "` + strings.Repeat("(", 100) + `...": expression nested too deeply at offset 199`},
		{hugeExpr(6000), `filter "` + hugeExpr(6000)[:100] + `...": program too long: *`},
		{strings.Repeat("vxlan and ", 17) + "tcp", `filter "` + strings.Repeat("vxlan and ", 10) + `...": expression too complex: more than 16 scratch memory slots needed`},
	}
	for _, tc := range cases {
		_, err := Compile(tc.expr, 65535)
		if err == nil {
			t.Errorf("%.60q: no error, want %s", tc.expr, tc.err)
			continue
		}
		if want, ok := strings.CutSuffix(tc.err, "*"); ok && strings.HasPrefix(err.Error(), want) {
			continue
		}
		if err.Error() != tc.err {
			t.Errorf("%.60q:\n got %.300s\nwant %.300s", tc.expr, err, tc.err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%.60q: error has several lines", tc.expr)
		}
	}
	if _, err := Compile("tcp", 0); err == nil {
		t.Error("snaplen 0 accepted")
	}
}

// checkProgram verifies the structural rules the kernel applies.
func checkProgram(t testing.TB, expr string, prog []bpf.Instruction) {
	t.Helper()
	if len(prog) == 0 || len(prog) > MaxInstructions {
		t.Fatalf("%.60q: %d instructions", expr, len(prog))
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		t.Fatalf("%.60q: assemble: %v", expr, err)
	}
	for i, r := range raw {
		switch r.Op & 0x07 {
		case 0x05: // jumps
			far := i + 1 + int(r.Jt)
			if r.Op == 0x05 { // ja
				far = i + 1 + int(r.K)
			} else if f := i + 1 + int(r.Jf); f > far {
				far = f
			}
			if far >= len(raw) {
				t.Fatalf("%.60q: instruction %d jumps past the end", expr, i)
			}
		case 0x06: // ret
		}
	}
	if last := raw[len(raw)-1].Op & 0x07; last != 0x06 {
		t.Fatalf("%.60q: does not end with ret", expr)
	}
	if _, err := bpf.NewVM(prog); err != nil {
		t.Fatalf("%.60q: NewVM: %v", expr, err)
	}
}

func TestProgramsWellFormed(t *testing.T) {
	for _, expr := range append(append([]string(nil), tcpdumpExprs...), longExpr(), hugeExpr(4000)) {
		prog, err := Compile(expr, 65535)
		if err != nil {
			t.Fatalf("%.60q: %v", expr, err)
		}
		checkProgram(t, expr, prog)
	}
}

func TestLongJumps(t *testing.T) {
	prog, err := Compile(hugeExpr(4000), 65535)
	if err != nil {
		t.Fatal(err)
	}
	far := false
	for _, ins := range prog {
		if j, ok := ins.(bpf.Jump); ok && j.Skip > 255 {
			far = true
		}
	}
	if !far {
		t.Errorf("no long jump in a %d-instruction program", len(prog))
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	hosts := strings.Split(hugeExpr(4000), " or host ")
	last := hosts[len(hosts)-1]
	fs := buildFrames(t)
	pkt := append([]byte(nil), fs[len(fs)-1].data...)
	hit := serialize(t, ethL(macA, macB, 0x0800), ip4L(last, "10.0.0.1", 17), l4(17, 1, 2, 0))
	if n, _ := vm.Run(hit); n == 0 {
		t.Error("last host of a long expression not matched")
	}
	if n, _ := vm.Run(pkt); n != 0 {
		t.Error("unrelated frame matched")
	}
}

func TestEmptyMatchesAll(t *testing.T) {
	prog, err := Compile("  ", 96)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) != 1 || prog[0] != (bpf.RetConstant{Val: 96}) {
		t.Errorf("empty expression: %v", prog)
	}
}

func TestContinuation(t *testing.T) {
	// A bare id continues the previous qualifiers; these pairs compile to
	// the same program.
	same := [][2]string{
		{"host 10.0.0.1 or 10.0.0.2", "host 10.0.0.1 or host 10.0.0.2"},
		{"tcp dst port 80 or 443", "tcp dst port 80 or tcp dst port 443"},
		{"src net 10.0.0.0/8 and not 10.1.0.0/16", "src net 10.0.0.0/8 and not src net 10.1.0.0/16"},
		{"ether src 02:00:00:00:00:01 or 02:00:00:00:00:02", "ether src 02:00:00:00:00:01 or ether src 02:00:00:00:00:02"},
		{"port 53 or domain", "port 53 or port 53"},
	}
	for _, p := range same {
		a, err1 := Compile(p[0], 100)
		b, err2 := Compile(p[1], 100)
		if err1 != nil || err2 != nil {
			t.Fatalf("%v %v", err1, err2)
		}
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%q and %q differ", p[0], p[1])
		}
	}
}

func FuzzCompile(f *testing.F) {
	for _, e := range tcpdumpExprs {
		f.Add(e)
	}
	for _, tc := range vxlanExprs {
		f.Add(tc.expr)
	}
	for _, e := range []string{"tcp[", "ip[1:", "host ::", "net /", "((", "not not not", "vxlan port", "len - - 1 = 1",
		"1 = 1", "0 != 0", "\\", "-", "ether host 1-2-3-4-5-6", "0102.0304.0506", "tcp[tcp[tcp[0]]] = 1", "port 1-2", "portrange a-b"} {
		f.Add(e)
	}
	frames := [][]byte{
		serialize(f, ethL(macA, macB, 0x0800), ip4L("10.0.0.1", "10.0.0.2", 6), l4(6, 80, 443, 2)),
		{0xff, 0xff},
		nil,
	}
	f.Fuzz(func(t *testing.T, expr string) {
		prog, err := Compile(expr, 65535)
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(expr, "\n") {
				t.Errorf("multi-line error: %v", err)
			}
			return
		}
		checkProgram(t, expr, prog)
		vm, _ := bpf.NewVM(prog)
		for _, fr := range frames {
			if _, err := vm.Run(fr); err != nil {
				t.Errorf("%q: run: %v", expr, err)
			}
		}
	})
}

func BenchmarkCompile(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := Compile("host 10.0.0.1 and (tcp port 80 or udp port 53) and not vlan", 65535); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVM(b *testing.B) {
	prog, err := Compile("host 10.0.0.1 and (tcp port 80 or udp port 53)", 65535)
	if err != nil {
		b.Fatal(err)
	}
	vm, _ := bpf.NewVM(prog)
	pkt := serialize(b, ethL(macA, macB, 0x0800), ip4L("10.0.0.1", "10.0.0.2", 17), l4(17, 5353, 53, 0))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vm.Run(pkt)
	}
}
