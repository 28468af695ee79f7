package ref

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    Ref
		wantErr bool
	}{
		{"pod-a", Ref{"default", "pod-a"}, false},
		{"shop/pod-a", Ref{"shop", "pod-a"}, false},
		{"pod/pod-a", Ref{"default", "pod-a"}, false},
		{"shop/pod/pod-a", Ref{"shop", "pod-a"}, false},
		{"shop/", Ref{}, true},
		{"a/b/c", Ref{}, true},
		{"", Ref{}, true},
		{"Pod-A", Ref{}, true},                          // upper case: not a DNS subdomain (RFC 1123)
		{"shop.eu/pod-a", Ref{}, true},                  // a namespace is a DNS label: no dots
		{"pod-a.v2", Ref{"default", "pod-a.v2"}, false}, // a pod name may have dots
		{"pod-a\x1b[2J", Ref{}, true},
		{strings.Repeat("a", 254), Ref{}, true}, // a DNS subdomain has at most 253 characters
	} {
		got, err := Parse(c.in, "default")
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("Parse(%q) = %v, %v; want %v (error %v)", c.in, got, err, c.want, c.wantErr)
		}
	}
}

// FuzzParse: go test -run '^$' -fuzz '^FuzzParse$' ./pkg/kube/ref/
// Whatever the argument: no panic; an error of one line with no raw
// control character; an accepted reference names a namespace and a pod
// the API server would accept (apimachinery's validation), and reads
// back to itself written as NAMESPACE/pod/NAME.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"pod-a", "shop/pod-a", "pod/pod-a", "shop/pod/pod-a", "pods/x", "po/po/x", "a/b/c", "shop/", "/", "",
		"pod-a.v2", "Pod-A", "\x1b]0;x\x07/p", "ns/\u202ep"} {
		f.Add(s, "default")
	}
	f.Fuzz(func(t *testing.T, arg, def string) {
		r, err := Parse(arg, def)
		if err != nil {
			msg := err.Error()
			for _, c := range msg {
				if c < 0x20 || c == 0x7f || c >= 0x80 && c <= 0x9f || c >= 0x202a && c <= 0x202e || c >= 0x2066 && c <= 0x2069 {
					t.Fatalf("error %q holds %q raw", msg, c)
				}
			}
			return
		}
		if m := validation.IsDNS1123Label(r.Namespace); len(m) > 0 {
			t.Fatalf("Parse(%q, %q) accepted namespace %q: %v", arg, def, r.Namespace, m)
		}
		if m := validation.IsDNS1123Subdomain(r.Name); len(m) > 0 {
			t.Fatalf("Parse(%q, %q) accepted name %q: %v", arg, def, r.Name, m)
		}
		if back, err := Parse(r.Namespace+"/pod/"+r.Name, "other"); err != nil || back != r {
			t.Fatalf("%v written as NAMESPACE/pod/NAME reads back as %v, %v", r, back, err)
		}
	})
}
