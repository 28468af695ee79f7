// Package nftrace names the netfilter rules a probe meets on a node: it
// marks the probe's packets, and only them, for nftables tracing and reads
// the kernel's trace events (NFNLGRP_NFTRACE): for each base chain the packet
// traverses, the rule that gave a verdict (accept, drop, queue, jump …) or
// the chain's policy, with the rule fetched by its handle and written as text.
//
// The mark is set by a table of its own, created with NFT_TABLE_F_OWNER
// (Linux 5.12): it belongs to the netlink socket that created it, and the
// kernel deletes it when that socket closes, also when the process is
// killed. Nothing else of the namespace's rule sets is touched. Rule sets
// of the legacy iptables backend (x_tables) and eBPF datapaths do not go
// through nf_tables: their verdicts cannot be traced (Status says when
// legacy tables are there).
package nftrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// tableFlagOwner is NFT_TABLE_F_OWNER (linux/netfilter/nf_tables.h, 5.12).
const tableFlagOwner = 0x2

// Priority of the tracing chains: before everything that usually decides
// a packet's fate (raw -300, conntrack -200, mangle -150, DNAT -100,
// filter 0), after defragmentation (-400).
const Priority = -350

// Match is the probe whose packets are traced: the same identity the
// capture filter uses.
type Match struct {
	Proto string     // "icmp", "tcp", "udp"
	Src   netip.Addr // the probe's source
	// Dst is its destination; the zero Addr when the probe may be
	// translated on the way (any destination).
	Dst netip.Addr
	// ICMPID is the echo id of an ICMP probe; FirstPort..LastPort the
	// source ports of TCP/UDP probes (their replies' destination ports).
	ICMPID              int
	FirstPort, LastPort int
}

// Event is one trace event of a probe packet.
type Event struct {
	TS      time.Time // when the agent read it
	TraceID uint32    // the kernel's id of the traced packet
	Family  string    // of the chain: ip, ip6, inet, bridge, arp, netdev
	Table   string
	Chain   string
	Handle  uint64 // the rule's handle (type "rule")
	Type    string // "rule", "policy" (the base chain's policy), "return" (end of a regular chain)
	Verdict string // accept, drop, queue, stolen, repeat, jump, goto, return, continue, break
	Target  string // the chain of a jump or goto
	Queue   int    // the queue number of a queue verdict
	Rule    string // the rule as text (type "rule"), "" when it could not be read
	Iif     int
	Oif     int
	// The packet, as the event's headers show it.
	Src, Dst       netip.Addr
	L4             string // tcp, udp, icmp, icmp6, or the protocol number
	SPort, DPort   int
	ICMPType       int
	ICMPID         int
	ICMPSeq        int
	Probe          bool // the probe's packet toward its destination
	Reply          bool // the answer to the probe
	ProbeSeq       int  // 1-based probe number (TCP/UDP: by source port; ICMP: the echo sequence)
	iptablesLayout bool
}

// IPTables tells whether the event's table is laid out as iptables-nft
// lays out its tables (a table filter, nat, mangle, raw or security of the
// ip or ip6 family): its rules are iptables rules, written in nftables
// terms.
func (e *Event) IPTables() bool { return e.iptablesLayout }

// Stats counts what a tracer read.
type Stats struct {
	Events  int // trace events of the probe kept
	Other   int // trace events of other packets (another tracer's), not kept
	Cut     int // probe events beyond the cap, not kept
	Overrun int // times the socket's receive buffer overran: events lost
}

// Tracer traces one probe in the current network namespace.
type Tracer struct {
	m      Match
	max    int
	name   string
	own    *netlink.Conn  // the socket that owns the tracing tables
	nft    *nftables.Conn // reads rules
	mon    *netlink.Conn  // NFNLGRP_NFTRACE
	tables []nftables.TableFamily

	mu     sync.Mutex
	events []Event
	st     Stats
	rules  map[chainKey]map[uint64][]expr.Any // rules by handle, per chain
	// ids maps the kernel's trace id of a packet to what its first event
	// showed of it: the kernel copies the headers into the first event of
	// each chain traversal only.
	ids    map[uint32]identity
	done   chan struct{}
	closed bool
}

type chainKey struct {
	family       nftables.TableFamily
	table, chain string
}

// TableName is the name of the tracer's tables: one per process.
func TableName() string { return fmt.Sprintf("podtrace_trace_%d", os.Getpid()) }

// Start subscribes to the trace events, then creates the tracing tables:
// inet (IPv4 and IPv6 packets at prerouting and output) and, where the
// kernel has it, bridge (bridged frames, which an IP hook sees only with
// br_netfilter). At most max probe events are kept. The families it could
// not trace are in the returned warnings.
func Start(m Match, max int) (*Tracer, []string, error) {
	if !m.Src.IsValid() {
		return nil, nil, errors.New("nftrace: the probe's source address is needed")
	}
	switch m.Proto {
	case "icmp", "tcp", "udp":
	default:
		return nil, nil, fmt.Errorf("nftrace: protocol %q", m.Proto)
	}
	mon, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("nftrace: netfilter netlink socket: %w", err)
	}
	if err := mon.JoinGroup(unix.NFNLGRP_NFTRACE); err != nil {
		mon.Close()
		return nil, nil, fmt.Errorf("nftrace: subscribe to trace events (needs NET_ADMIN): %w", err)
	}
	_ = mon.SetReadBuffer(1 << 20)
	own, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		mon.Close()
		return nil, nil, fmt.Errorf("nftrace: netfilter netlink socket: %w", err)
	}
	// Lasting: its socket is opened here, in this network namespace.
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		mon.Close()
		own.Close()
		return nil, nil, fmt.Errorf("nftrace: nftables: %w", err)
	}
	t := &Tracer{m: m, max: max, name: TableName(), own: own, nft: conn, mon: mon,
		rules: map[chainKey]map[uint64][]expr.Any{}, ids: map[uint32]identity{}, done: make(chan struct{})}
	if err := t.addTable(nftables.TableFamilyINet, true); err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("nftrace: create the tracing table: %w", err)
	}
	var warnings []string
	if err := t.addTable(nftables.TableFamilyBridge, false); err != nil {
		warnings = append(warnings, "bridged frames are not traced (no nftables bridge family here: "+err.Error()+")")
	}
	go t.read()
	return t, warnings, nil
}

// addTable creates one owned table with its chains and marking rules, in
// one transaction on the tracer's own socket: the table belongs to that
// socket (NFT_TABLE_F_OWNER), so it lives as long as the socket.
func (t *Tracer) addTable(fam nftables.TableFamily, output bool) error {
	hooks := []uint32{unix.NF_INET_PRE_ROUTING}
	if output {
		hooks = append(hooks, unix.NF_INET_LOCAL_OUT)
	}
	name := func(n string) []byte { return append([]byte(n), 0) }
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	msgs := []netlink.Message{nftMsg(unix.NFT_MSG_NEWTABLE, fam, netlink.Create, []netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: name(t.name)},
		{Type: unix.NFTA_TABLE_FLAGS, Data: be32(tableFlagOwner)},
	})}
	prio := int32(Priority)
	for i, h := range hooks {
		chain := []string{"pre", "out"}[i]
		hook, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_HOOK_HOOKNUM, Data: be32(h)},
			{Type: unix.NFTA_HOOK_PRIORITY, Data: be32(uint32(prio))},
		})
		if err != nil {
			return err
		}
		msgs = append(msgs, nftMsg(unix.NFT_MSG_NEWCHAIN, fam, netlink.Create, []netlink.Attribute{
			{Type: unix.NFTA_CHAIN_TABLE, Data: name(t.name)},
			{Type: unix.NFTA_CHAIN_NAME, Data: name(chain)},
			{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: hook},
			{Type: unix.NFTA_CHAIN_TYPE, Data: name("filter")},
		}))
		for _, r := range markRules(t.m) {
			var elems []netlink.Attribute
			for _, e := range r {
				b, err := expr.Marshal(byte(fam), e)
				if err != nil {
					return err
				}
				elems = append(elems, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
			}
			list, err := netlink.MarshalAttributes(elems)
			if err != nil {
				return err
			}
			msgs = append(msgs, nftMsg(unix.NFT_MSG_NEWRULE, fam, netlink.Create|netlink.Append, []netlink.Attribute{
				{Type: unix.NFTA_RULE_TABLE, Data: name(t.name)},
				{Type: unix.NFTA_RULE_CHAIN, Data: name(chain)},
				{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: list},
			}))
		}
	}
	if err := t.transact(msgs); err != nil {
		return err
	}
	t.tables = append(t.tables, fam)
	return nil
}

// nftMsg is one nf_tables request of a batch.
func nftMsg(typ int, fam nftables.TableFamily, flags netlink.HeaderFlags, attrs []netlink.Attribute) netlink.Message {
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		panic(err) // only fixed, well-formed attributes are marshalled here
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), Flags: netlink.Request | netlink.Acknowledge | flags},
		Data:   append([]byte{byte(fam), unix.NFNETLINK_V0, 0, 0}, b...),
	}
}

// transact sends messages as one nf_tables batch on the owner socket and
// waits for each acknowledgement.
func (t *Tracer) transact(msgs []netlink.Message) error {
	edge := func(typ int) netlink.Message {
		return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request},
			Data: []byte{0, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}}
	}
	batch := append(append([]netlink.Message{edge(unix.NFNL_MSG_BATCH_BEGIN)}, msgs...), edge(unix.NFNL_MSG_BATCH_END))
	if _, err := t.own.SendMessages(batch); err != nil {
		return err
	}
	_ = t.own.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = t.own.SetReadDeadline(time.Time{}) }()
	for acked := 0; acked < len(msgs); {
		replies, err := t.own.Receive()
		if err != nil {
			return err
		}
		acked += len(replies)
	}
	return nil
}

// markRules are the rules that set nftrace on the probe's packets and its
// answers: one for each direction.
func markRules(m Match) [][]expr.Any {
	v6 := m.Src.Is6()
	ethType := []byte{0x08, 0x00}
	saddr, daddr, alen := uint32(12), uint32(16), uint32(4)
	if v6 {
		ethType = []byte{0x86, 0xdd}
		saddr, daddr, alen = 8, 24, 16
	}
	l4, echo, echoReply := byte(unix.IPPROTO_ICMP), byte(8), byte(0)
	if v6 {
		l4, echo, echoReply = unix.IPPROTO_ICMPV6, 128, 129
	}
	switch m.Proto {
	case "tcp":
		l4 = unix.IPPROTO_TCP
	case "udp":
		l4 = unix.IPPROTO_UDP
	}
	addr := func(off uint32, a netip.Addr) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: alen},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
		}
	}
	th := func(off, n uint32) *expr.Payload {
		return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: n}
	}
	be16 := func(v int) []byte { return []byte{byte(v >> 8), byte(v)} }
	var rules [][]expr.Any
	for _, reply := range []bool{false, true} {
		r := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ethType},
		}
		src, dst := saddr, daddr
		if reply {
			src, dst = daddr, saddr
		}
		r = append(r, addr(src, m.Src)...)
		if m.Dst.IsValid() {
			r = append(r, addr(dst, m.Dst)...)
		}
		r = append(r, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4}})
		if m.Proto == "icmp" {
			typ := echo
			if reply {
				typ = echoReply
			}
			r = append(r, th(0, 1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{typ}},
				th(4, 2), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(m.ICMPID)})
		} else {
			off := uint32(0) // source port
			if reply {
				off = 2 // destination port
			}
			r = append(r, th(off, 2),
				&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: be16(m.FirstPort)},
				&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: be16(max(m.LastPort, m.FirstPort))})
		}
		r = append(r, &expr.Immediate{Register: 1, Data: []byte{1}},
			&expr.Meta{Key: expr.MetaKeyNFTRACE, SourceRegister: true, Register: 1})
		rules = append(rules, r)
	}
	return rules
}

// Close deletes the tracing tables (closing the socket that owns them) and
// stops reading events. Safe to call more than once.
func (t *Tracer) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	t.mu.Unlock()
	_ = t.own.Close() // the kernel deletes the tables it owns
	_ = t.nft.CloseLasting()
	_ = t.mon.SetReadDeadline(time.Now())
	if t.done != nil && len(t.tables) > 0 {
		select {
		case <-t.done:
		case <-time.After(time.Second):
		}
	}
	_ = t.mon.Close()
}

// Events stops the tracer (Close) after letting the events already queued
// in the socket be read, and returns the probe's events in the order the
// kernel sent them, with the counts.
func (t *Tracer) Events() ([]Event, Stats) {
	t.readQueued()
	t.Close()
	return t.kept()
}

// Drain is Events without the Close: it ends the reading once the events
// queued in the socket are read, and leaves the tracing table in place
// until Close. Deleting the table is a transaction the kernel commits
// after an RCU grace period, which a caller that has the events need not
// wait for; events of later packets are no longer read.
func (t *Tracer) Drain() ([]Event, Stats) {
	t.readQueued()
	return t.kept()
}

// readQueued waits until the reading ends: the kernel sends a trace event
// as the packet passes the rule, so the events of every packet that passed
// before now are in the socket buffer; they are read until the socket
// stays quiet for a moment.
func (t *Tracer) readQueued() {
	_ = t.mon.SetReadDeadline(time.Now().Add(quiet))
	select {
	case <-t.done:
	case <-time.After(2 * time.Second):
	}
}

func (t *Tracer) kept() ([]Event, Stats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Event(nil), t.events...), t.st
}

// quiet is how long the socket must stay empty, once the tracer is
// stopping, for the reading to end. A read returns what is queued at
// once, however late the reader runs: the kernel queues a trace event as
// the packet passes the rule, so the wait only covers packets on another
// CPU at the stop, which take microseconds. The probe's packets have
// passed long before: the plugin stops the agents after the probe's
// outcome and a grace period. Every stopping node agent waits for it
// (twice: see read), and the plugin for every agent.
const quiet = 3 * time.Millisecond

// read receives trace events until the socket is closed or stays quiet
// past its read deadline once the tracer is stopping.
func (t *Tracer) read() {
	defer close(t.done)
	retried := false
	for {
		msgs, err := t.mon.Receive()
		if err != nil {
			var op *netlink.OpError
			if errors.As(err, &op) && errors.Is(op.Err, unix.ENOBUFS) {
				t.mu.Lock()
				t.st.Overrun++
				t.mu.Unlock()
				continue
			}
			// A read deadline, set when stopping: the events queued
			// before it are read to the end. The deadline may have
			// passed while a rule was being fetched, with events still
			// queued: one more short read takes them; only a read
			// that finds nothing ends.
			if isTimeout(err) && !retried {
				retried = true
				_ = t.mon.SetReadDeadline(time.Now().Add(quiet))
				continue
			}
			return // that read found nothing, or the socket is closed
		}
		retried = false
		for _, msg := range msgs {
			if msg.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_TRACE) {
				continue
			}
			e, err := parseTrace(msg.Data)
			if err != nil {
				continue
			}
			t.keep(e)
		}
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// keep adds one event if it is the probe's, names its rule, and counts.
func (t *Tracer) keep(e *Event) {
	if e.Table == t.name {
		return // the tracing table's own chains (their policy accept)
	}
	t.mu.Lock()
	var probe, reply bool
	var seq int
	if e.Src.IsValid() {
		probe, reply, seq = t.identify(e)
		if len(t.ids) < maxIDs {
			t.ids[e.TraceID] = identity{probe, reply, seq}
		}
	} else if id, ok := t.ids[e.TraceID]; ok {
		probe, reply, seq = id.probe, id.reply, id.seq
	}
	if !probe && !reply {
		t.st.Other++
		t.mu.Unlock()
		return
	}
	if len(t.events) >= t.max {
		t.st.Cut++
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	e.Probe, e.Reply, e.ProbeSeq = probe, reply, seq
	e.TS = time.Now()
	e.iptablesLayout = iptablesLayout(e.Family, e.Table)
	if e.Type == "rule" {
		e.Rule = t.ruleText(e)
	}
	t.mu.Lock()
	t.events = append(t.events, *e)
	t.st.Events++
	t.mu.Unlock()
}

type identity struct {
	probe, reply bool
	seq          int
}

// maxIDs bounds the packets a tracer remembers.
const maxIDs = 4096

// identify tells whether the event's packet is the probe (toward its
// destination) or its answer, and which probe.
func (t *Tracer) identify(e *Event) (probe, reply bool, seq int) {
	m := t.m
	if !e.Src.IsValid() {
		return false, false, 0
	}
	src, dst := e.Src.Unmap(), e.Dst.Unmap()
	toward := src == m.Src && (!m.Dst.IsValid() || dst == m.Dst)
	back := dst == m.Src && (!m.Dst.IsValid() || src == m.Dst)
	switch m.Proto {
	case "icmp":
		if e.L4 != "icmp" && e.L4 != "icmp6" || e.ICMPID != m.ICMPID {
			return false, false, 0
		}
		req := e.ICMPType == 8 || e.ICMPType == 128
		rep := e.ICMPType == 0 || e.ICMPType == 129
		return toward && req, back && rep, e.ICMPSeq
	default:
		if e.L4 != m.Proto {
			return false, false, 0
		}
		last := max(m.LastPort, m.FirstPort)
		if toward && e.SPort >= m.FirstPort && e.SPort <= last {
			return true, false, e.SPort - m.FirstPort + 1
		}
		if back && e.DPort >= m.FirstPort && e.DPort <= last {
			return false, true, e.DPort - m.FirstPort + 1
		}
	}
	return false, false, 0
}

// ruleText fetches the rule of an event by its handle (the chain's rules
// once, then from memory) and writes it as text.
func (t *Tracer) ruleText(e *Event) string {
	fam, ok := familyOf(e.Family)
	if !ok {
		return ""
	}
	k := chainKey{fam, e.Table, e.Chain}
	t.mu.Lock()
	byHandle, ok := t.rules[k]
	t.mu.Unlock()
	if !ok {
		// The chain's rules once (a dump: the kernel has no lookup by
		// handle for a rule's expressions), each written when asked.
		byHandle = map[uint64][]expr.Any{}
		rules, err := t.nft.GetRules(&nftables.Table{Name: e.Table, Family: fam}, &nftables.Chain{Name: e.Chain})
		if err == nil {
			for i, r := range rules {
				if i >= maxRulesPerChain {
					break
				}
				byHandle[r.Handle] = r.Exprs
			}
		}
		t.mu.Lock()
		t.rules[k] = byHandle
		t.mu.Unlock()
	}
	exprs, ok := byHandle[e.Handle]
	if !ok {
		return ""
	}
	return Render(exprs)
}

// maxRulesPerChain bounds what the tracer keeps of one chain.
const maxRulesPerChain = 100000

func familyOf(s string) (nftables.TableFamily, bool) {
	for f, n := range familyNames {
		if n == s {
			return f, true
		}
	}
	return 0, false
}

var familyNames = map[nftables.TableFamily]string{
	nftables.TableFamilyINet: "inet", nftables.TableFamilyIPv4: "ip", nftables.TableFamilyIPv6: "ip6",
	nftables.TableFamilyARP: "arp", nftables.TableFamilyNetdev: "netdev", nftables.TableFamilyBridge: "bridge",
}

// iptablesLayout: the table is one iptables-nft creates.
func iptablesLayout(family, table string) bool {
	if family != "ip" && family != "ip6" {
		return false
	}
	switch table {
	case "filter", "nat", "mangle", "raw", "security":
		return true
	}
	return false
}

// LegacyTables lists the iptables-legacy (x_tables) tables of the current
// network namespace ("iptables filter", "ip6tables nat"): their rules do
// not go through nf_tables and cannot be traced.
func LegacyTables() []string {
	var out []string
	for _, f := range []struct{ file, tool string }{
		{"/proc/net/ip_tables_names", "iptables-legacy"}, {"/proc/net/ip6_tables_names", "ip6tables-legacy"},
	} {
		b, err := os.ReadFile(f.file)
		if err != nil {
			continue
		}
		for _, name := range strings.Fields(string(b)) {
			out = append(out, f.tool+" "+name)
		}
	}
	return out
}
