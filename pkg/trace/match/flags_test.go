package match

import "testing"

func TestUnionFlags(t *testing.T) {
	for _, tc := range [][3]string{{"", "", ""}, {"SYN", "", "SYN"}, {"", "ACK", "ACK"}, {"SYN,ACK", "FIN,ACK", "SYN,FIN,ACK"}, {"RST", "SYN", "SYN,RST"}} {
		if got := unionFlags(tc[0], tc[1]); got != tc[2] {
			t.Errorf("unionFlags(%q, %q) = %q; want %q", tc[0], tc[1], got, tc[2])
		}
	}
}
