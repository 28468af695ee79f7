package netsnap

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

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

// A policy engine's rule queues only the packets whose address is in its
// set (kube-network-policies: ip daddr @podips-v4, written as the NFQUEUE
// target): with the set empty it matches nothing and is not named; with an
// address in it, it is.
func TestQueueRuleSetsLeavesOutALookupOfAnEmptySet(t *testing.T) {
	nettest.RequireRoot(t)
	ns := nettest.NS(t, nettest.Prefix()+"q")
	table := &nftables.Table{Name: "ptengine", Family: nftables.TableFamilyINet}
	set := &nftables.Set{Table: table, Name: "podips", KeyType: nftables.TypeIPAddr}
	var empty, got []string
	var err error
	in(t, ns, func() {
		c, cerr := nftables.New()
		if cerr != nil {
			err = cerr
			return
		}
		c.AddTable(table)
		if err = c.AddSet(set, nil); err != nil {
			return
		}
		chain := c.AddChain(&nftables.Chain{Name: "post", Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityFilter})
		info := make([]byte, 6) // struct xt_NFQ_info_v3: queuenum, queues_total, flags
		binary.NativeEndian.PutUint16(info[0:], 100)
		binary.NativeEndian.PutUint16(info[2:], 1)
		u := xt.Unknown(info)
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name},
			&expr.Target{Name: "NFQUEUE", Rev: 3, Info: &u},
		}})
		if err = c.Flush(); err != nil {
			return
		}
		if empty, err = QueueRuleSets(); err != nil {
			return
		}
		if err = c.SetAddElements(set, []nftables.SetElement{{Key: netip.MustParseAddr("10.1.2.3").AsSlice()}}); err != nil {
			return
		}
		if err = c.Flush(); err != nil {
			return
		}
		got, err = QueueRuleSets()
	})
	if want := []string{"nftables inet ptengine"}; err != nil || len(empty) != 0 || !slices.Equal(got, want) {
		t.Errorf("QueueRuleSets() = %q with the set empty, %q with an address in it (%v); want none, then %q", empty, got, err, want)
	}
}
