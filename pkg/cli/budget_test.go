package cli

import (
	"strings"
	"testing"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
)

func TestBudgetFlagReachesTheAgentCommandLine(t *testing.T) {
	for _, tc := range []struct {
		flag, want, err string
	}{
		{"", "--budget 131072", ""},
		{"128Ki", "--budget 131072", ""},
		{"1Mi", "--budget 1048576", ""},
		{"500k", "--budget 500000", ""},
		{"0", "--budget 0", ""}, // no limit
		{"1Ki", "", "too little"},
		{"-5", "", "want bytes per second"},
		{"lots", "", "want bytes per second"},
	} {
		o := TraceOptions{Budget: tc.flag}
		err := o.parseBudget()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("--budget %q: error %v, want %q", tc.flag, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("--budget %q: %v", tc.flag, err)
		}
		var s launch.Spec
		o.Apply(&s)
		if args := strings.Join(s.Args(), " "); !strings.Contains(args, tc.want) {
			t.Errorf("--budget %q: agent args %q lack %q", tc.flag, args, tc.want)
		}
	}
}
