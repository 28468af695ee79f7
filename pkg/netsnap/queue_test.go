package netsnap

import (
	"slices"
	"testing"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// A namespace whose rules queue packets to userspace, as a policy engine's
// do: the xtables NFQUEUE target written by iptables-nft (this target is
// what nft_compat runs; the nft queue statement needs CONFIG_NFT_QUEUE,
// which not every kernel has) is named by its table, a table without a
// queue rule is not, and a namespace without one names nothing.
func TestQueueRuleSetsNamesTheTablesThatQueue(t *testing.T) {
	nettest.RequireRoot(t)
	nettest.RequireTool(t, "nft", "apt-get install nftables")
	nettest.RequireTool(t, "iptables-nft", "apt-get install iptables")
	ns := nettest.NS(t, nettest.Prefix()+"q")
	var got []string
	var err error
	in(t, ns, func() { got, err = QueueRuleSets() })
	if err != nil || len(got) != 0 {
		t.Fatalf("empty namespace: QueueRuleSets() = %q, %v; want none", got, err)
	}
	nettest.In(t, ns, "nft", "add", "table", "inet", "ptother")
	nettest.In(t, ns, "nft", "add chain inet ptother ptfwd { type filter hook forward priority 0; policy accept; }")
	nettest.In(t, ns, "nft", "add rule inet ptother ptfwd tcp dport 8080 counter accept")
	nettest.In(t, ns, "iptables-nft", "-t", "filter", "-A", "FORWARD", "-p", "tcp", "-j", "NFQUEUE", "--queue-num", "100")
	in(t, ns, func() { got, err = QueueRuleSets() })
	if want := []string{"nftables ip filter"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("QueueRuleSets() = %q, %v; want %q", got, err, want)
	}
}
