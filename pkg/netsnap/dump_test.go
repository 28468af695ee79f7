package netsnap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

func TestDumpReadsAgainWhenInterrupted(t *testing.T) {
	other := errors.New("permission denied")
	cases := []struct {
		name        string
		interrupted int // reads flagged NLM_F_DUMP_INTR before a clean one
		err         error
		wantCalls   int
		wantErr     error
		wantLast    int
	}{
		{"clean read once", 0, nil, 1, nil, 1},
		{"clean after two interrupted reads", 2, nil, 3, nil, 3},
		{"always interrupted keeps the last read", 1000, nil, dumpTries, nil, dumpTries},
		{"another error is returned at once", 0, other, 1, other, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			got, err := dump(func() ([]int, error) {
				calls++
				if c.err != nil {
					return nil, c.err
				}
				if calls <= c.interrupted {
					return []int{calls}, netlink.ErrDumpInterrupted
				}
				return []int{calls}, nil
			})
			if calls != c.wantCalls || !errors.Is(err, c.wantErr) {
				t.Fatalf("calls=%d err=%v, want calls=%d err=%v", calls, err, c.wantCalls, c.wantErr)
			}
			if c.wantErr == nil && (len(got) != 1 || got[0] != c.wantLast) {
				t.Fatalf("kept %v, want the result of read %d", got, c.wantLast)
			}
		})
	}
}

// TestTakeWhileLinksChurn takes snapshots of a namespace holding a few
// hundred links while another process adds and deletes veth pairs in it,
// as on a node where pods start and stop. The kernel interrupts some of
// the raw link dumps (counted here to prove the test reaches the case);
// a snapshot must never fail because of it.
func TestTakeWhileLinksChurn(t *testing.T) {
	nettest.RequireRoot(t)
	nettest.RequireTool(t, "ip", "apt-get install iproute2")
	ns := nettest.NS(t, nettest.Prefix()+"churn")
	var batch strings.Builder
	for i := range 150 {
		fmt.Fprintf(&batch, "link add s%da type veth peer name s%db\n", i, i)
	}
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	churn := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "sh", "-c",
		"while :; do ip link add c0 type veth peer name c1; ip link del c0; done")
	churn.Stdout, churn.Stderr = os.Stderr, os.Stderr
	if err := churn.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = churn.Wait() }()

	interrupted, takes := 0, 0
	in(t, ns, func() {
		h, err := netlink.NewHandle()
		if err != nil {
			panic(err)
		}
		defer h.Close()
		for i := 0; i < 3000 && interrupted < 5; i++ {
			if _, err := h.LinkList(); errors.Is(err, netlink.ErrDumpInterrupted) {
				interrupted++
			}
			if _, err := Take("churn"); err != nil {
				panic(fmt.Sprintf("snapshot %d while links churn: %v", i, err))
			}
			takes++
		}
	})
	t.Logf("%d snapshots, %d raw link dumps interrupted", takes, interrupted)
	if interrupted == 0 {
		t.Fatalf("no link dump was interrupted in %d reads: the churn did not reach the case this test is about", takes)
	}
}
