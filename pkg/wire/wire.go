// Package wire is the contract between a capture agent and the plugin:
// everything the two sides must agree on, and nothing else of ours (it
// imports no package of this module). It holds the observation stream
// (one JSON object per line, versioned by the "v" field, with a
// per-agent sequence number so that the reader can report gaps; its
// writer and bounded reader), the control lines the plugin writes to an
// agent, how probes are named and recognised, and the defaults both sides
// assume (snaplen, byte budget, summaries). The agent's command line is
// built by launch.Spec.Args and parsed by the agent's main; a test there
// parses what Args builds for every field of a Spec.
//
// The stream is documented for humans in docs/observation-stream.md
// (tests hold its lists of kinds, bye reasons and control lines to the
// constants here); this file is its machine contract. Fields are only
// ever added; a reader of version N accepts every version <= N.
package wire

import "time"

// Version is the stream version this build writes.
const Version = 1

// Kinds of observation.
const (
	KindHello    = "hello"    // agent identity and armed capture; once, first
	KindTopology = "topology" // snapshot of links, FDB, neighbours, routes
	KindPacket   = "packet"   // one frame seen at one interface
	KindChange   = "change"   // a neighbour / FDB / link change seen live
	KindProbe    = "probe"    // a probe the agent sent, or its outcome
	KindStats    = "stats"    // kernel capture counters per socket
	KindSummary  = "summary"  // per-flow counts of one interval, instead of packet lines
	KindNAT      = "nat"      // a translation of the probe's connection, from conntrack
	KindNFTrace  = "nftrace"  // a netfilter (nf_tables) verdict on the probe's packet
	KindDrop     = "drop"     // the kernel dropped one of the probe's packets, and said why
	KindError    = "error"    // something the agent could not do
	KindBye      = "bye"      // last line: the agent is exiting
)

// Roles an agent can run in.
const (
	RolePod  = "pod"  // inside a pod's network namespace
	RoleNode = "node" // inside a node's root network namespace
)

// Envelope is one line of the stream. Exactly one of the payload pointers
// is set, matching Kind.
type Envelope struct {
	V     int    `json:"v"`
	Seq   uint64 `json:"seq"`
	Agent string `json:"agent"` // agent id, unique within a session
	// Run is the run token the plugin gave with its start line: every
	// line of that run carries it, so that a reader attached to an agent
	// that serves runs one after another (--linger) reads only its own.
	// Empty on lines written before a start line was read.
	Run  string `json:"run,omitempty"`
	Kind string `json:"kind"`
	// TS is when the agent produced the line (not the packet time).
	TS time.Time `json:"ts"`

	Hello    *Hello    `json:"hello,omitempty"`
	Topology *Topology `json:"topology,omitempty"`
	Packet   *Packet   `json:"packet,omitempty"`
	Change   *Change   `json:"change,omitempty"`
	Probe    *Probe    `json:"probe,omitempty"`
	Stats    *Stats    `json:"stats,omitempty"`
	Summary  *Summary  `json:"summary,omitempty"`
	NAT      *NAT      `json:"nat,omitempty"`
	NFTrace  *NFTrace  `json:"nftrace,omitempty"`
	Drop     *Drop     `json:"drop,omitempty"`
	Error    *Error    `json:"error,omitempty"`
	Bye      *Bye      `json:"bye,omitempty"`
}

// Hello is sent once, after capture is armed (the BPF filter attached and
// the socket bound). A plugin starts probing only after every agent of the
// session said hello.
type Hello struct {
	Role     string `json:"role"`
	Node     string `json:"node,omitempty"`  // node name as the launcher knows it
	Name     string `json:"name,omitempty"`  // e.g. "default/pod-a" or "node-1"
	NetNS    string `json:"netns,omitempty"` // path or name given to the agent
	NetNSID  uint64 `json:"netnsInode"`      // inode of the netns, unique per host
	Hostname string `json:"hostname,omitempty"`
	Version  string `json:"agentVersion,omitempty"`
	PID      int    `json:"pid"`
	Filter   string `json:"filter"` // the capture filter, tcpdump syntax
	Snaplen  int    `json:"snaplen"`
	// Linger is how long the agent waits for another run after this one
	// (--linger; absent: it serves one run), and LingerCap the end of its
	// life whatever its runs.
	Linger    time.Duration `json:"linger,omitempty"`
	LingerCap time.Time     `json:"lingerCap,omitzero"`
	Promisc   []string      `json:"promisc,omitempty"` // interfaces put in promiscuous mode for the run
	Deadline  time.Time     `json:"deadline"`
	Links     []Link        `json:"links"`
	Addresses []Address     `json:"addresses,omitempty"`
	Caps      []string      `json:"capabilities,omitempty"` // effective capabilities, e.g. "NET_RAW"
	Warnings  []string      `json:"warnings,omitempty"`
	// NFTrace says whether the agent traces the probe through the
	// namespace's nf_tables rule sets (node agents of an active trace).
	NFTrace *NFTraceStatus `json:"nftrace,omitempty"`
	Probe   *ProbeSpec     `json:"probe,omitempty"` // set when this agent will send the probe
	Clock   string         `json:"clock"`           // "realtime": packet timestamps are CLOCK_REALTIME
	// SummarizeAbove is the capture rate (packets per second, sustained
	// for a second) above which the agent writes per-flow summaries
	// every SummaryInterval instead of packet lines; 0: never.
	SummarizeAbove  int           `json:"summarizeAbove,omitempty"`
	SummaryInterval time.Duration `json:"summaryInterval,omitempty"`
	// Unprivileged: the agent runs without privilege (no capability, a
	// non-root uid) and captures nothing: no AF_PACKET socket, no netlink
	// subscription, no links listed. It only sends the probe and reports
	// what its socket saw of it (probe lines); the frames of its namespace
	// are seen, if at all, by the node agents at the other end of its
	// veth.
	Unprivileged bool `json:"unprivileged,omitempty"`
	// KernelDrops says whether the agent follows the kernel's drops of
	// the probe's packets (--kernel-drops); absent when not asked.
	KernelDrops *KernelDrops `json:"kernelDrops,omitempty"`
}

// KernelDrops is the state of an agent's kernel drop reasons program.
type KernelDrops struct {
	Armed bool `json:"armed"`
	// Why it is not armed (a missing capability, an old kernel, an IPv6
	// probe), in one line.
	Why string `json:"why,omitempty"`
	// LoadTime is how long building, loading and attaching the program
	// took (ns).
	LoadTime time.Duration `json:"loadTime,omitempty"`
}

// Link is one network interface of the agent's namespace.
type Link struct {
	Index       int      `json:"ifindex"`
	Name        string   `json:"name"`
	Kind        string   `json:"kind,omitempty"`   // veth, bridge, vxlan, geneve, device, ...
	IfLink      int      `json:"iflink,omitempty"` // peer ifindex (veth) or lower device
	PeerNetNSID int      `json:"peerNetnsId,omitempty"`
	Master      int      `json:"master,omitempty"` // ifindex of the bridge/bond it is enslaved to
	MAC         string   `json:"mac,omitempty"`
	MTU         int      `json:"mtu,omitempty"`
	State       string   `json:"state,omitempty"` // up, down, lowerlayerdown, ...
	Promisc     bool     `json:"promisc,omitempty"`
	Addrs       []string `json:"addrs,omitempty"` // CIDR notation
	// Overlay devices only.
	VNI      int    `json:"vni,omitempty"`
	Local    string `json:"local,omitempty"`
	Port     int    `json:"port,omitempty"`
	Remote   string `json:"remote,omitempty"` // fixed remote VTEP (Geneve remote, VXLAN unicast remote)
	ProxyARP bool   `json:"proxyArp,omitempty"`
	Captured bool   `json:"captured"` // frames at this link reach the agent
}

// Address is an IP address of the namespace.
type Address struct {
	Index int    `json:"ifindex"`
	CIDR  string `json:"cidr"`
}

// Topology is a netlink snapshot. When is "before" or "after" the probe.
type Topology struct {
	When   string  `json:"when"`
	Links  []Link  `json:"links"`
	FDB    []FDB   `json:"fdb,omitempty"`
	Neigh  []Neigh `json:"neigh,omitempty"`
	Routes []Route `json:"routes,omitempty"`
}

// FDB is one bridge forwarding database entry.
type FDB struct {
	Bridge string `json:"bridge,omitempty"`
	Port   string `json:"port"`
	Index  int    `json:"ifindex"`
	MAC    string `json:"mac"`
	VLAN   int    `json:"vlan,omitempty"`
	Dst    string `json:"dst,omitempty"` // VXLAN remote
	Flags  string `json:"flags,omitempty"`
	Local  bool   `json:"local,omitempty"` // the bridge's / port's own address
}

// Neigh is one neighbour (ARP / NDP) entry.
type Neigh struct {
	Dev   string `json:"dev"`
	Index int    `json:"ifindex"`
	IP    string `json:"ip"`
	MAC   string `json:"mac,omitempty"`
	State string `json:"state"` // REACHABLE, STALE, INCOMPLETE, FAILED, PERMANENT, ...
}

// Route is one route entry (main table).
type Route struct {
	Dst      string `json:"dst"` // "default" or CIDR
	Gateway  string `json:"gw,omitempty"`
	Dev      string `json:"dev,omitempty"`
	Index    int    `json:"ifindex,omitempty"`
	Src      string `json:"src,omitempty"`
	Scope    string `json:"scope,omitempty"`
	Protocol string `json:"proto,omitempty"`
}

// Change is a neighbour, FDB or link change seen live through a netlink
// subscription. TS is when the agent received the notification.
type Change struct {
	TS     time.Time `json:"ts"`
	What   string    `json:"what"`   // "neigh", "fdb", "link"
	Action string    `json:"action"` // "new", "changed", "deleted"
	Neigh  *Neigh    `json:"neigh,omitempty"`
	FDB    *FDB      `json:"fdb,omitempty"`
	Link   *Link     `json:"link,omitempty"`
	Was    string    `json:"was,omitempty"` // previous state or MAC/port
}

// Packet is one frame seen at one interface.
type Packet struct {
	TS        time.Time `json:"ts"` // kernel receive/transmit timestamp
	Index     int       `json:"ifindex"`
	Iface     string    `json:"iface"`
	Dir       string    `json:"dir"`     // "in" (received by the interface) or "out" (sent by it)
	PktType   string    `json:"pkttype"` // host, broadcast, multicast, otherhost, outgoing
	Len       int       `json:"len"`     // length on the wire
	CapLen    int       `json:"caplen"`
	Frame     []byte    `json:"frame,omitempty"` // captured bytes (at most snaplen)
	Eth       *Eth      `json:"eth,omitempty"`
	ARP       *ARP      `json:"arp,omitempty"`
	IP        *IP       `json:"ip,omitempty"`
	Encap     *Encap    `json:"encap,omitempty"` // set when IP/L4 describe an inner packet
	L4        *L4       `json:"l4,omitempty"`
	Summary   string    `json:"summary"`
	FP        string    `json:"fp,omitempty"` // fingerprint; equal across hops for one packet
	ProbeID   string    `json:"probe,omitempty"`
	Truncated bool      `json:"truncated,omitempty"`
}

// Eth is the Ethernet header.
type Eth struct {
	Src  string `json:"src"`
	Dst  string `json:"dst"`
	Type string `json:"type"`
	VLAN int    `json:"vlan,omitempty"`
}

// ARP is an ARP request or reply.
type ARP struct {
	Op        string `json:"op"` // "who-has" or "is-at"
	SenderMAC string `json:"senderMac"`
	SenderIP  string `json:"senderIp"`
	TargetMAC string `json:"targetMac"`
	TargetIP  string `json:"targetIp"`
}

// IP is the (inner, when encapsulated) IP header.
type IP struct {
	Version int    `json:"version"`
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	ID      uint32 `json:"id,omitempty"` // IPv4 ID or IPv6 flow label
	TTL     int    `json:"ttl"`
	Proto   string `json:"proto"`
	Len     int    `json:"len"`
}

// Encap describes the outer headers of an overlay frame.
type Encap struct {
	Type     string `json:"type"` // "vxlan" or "geneve"
	VNI      uint32 `json:"vni"`
	OuterSrc string `json:"outerSrc"`
	OuterDst string `json:"outerDst"`
	SrcPort  int    `json:"srcPort"`
	DstPort  int    `json:"dstPort"`
	OuterMAC string `json:"outerMac,omitempty"`
}

// L4 is the transport header (or ICMP / NDP).
type L4 struct {
	Proto   string `json:"proto"` // tcp, udp, icmp, icmp6
	SrcPort int    `json:"sport,omitempty"`
	DstPort int    `json:"dport,omitempty"`
	Flags   string `json:"flags,omitempty"` // TCP flags, e.g. "SYN", "SYN,ACK", "RST,ACK"
	Seq     uint32 `json:"seq,omitempty"`
	Ack     uint32 `json:"ack,omitempty"`
	Type    string `json:"type,omitempty"` // ICMP type name: echo-request, echo-reply, dest-unreachable ...
	Code    int    `json:"code,omitempty"`
	ICMPID  int    `json:"icmpId,omitempty"`
	ICMPSeq int    `json:"icmpSeq,omitempty"`
	Target  string `json:"target,omitempty"` // NDP target address
	Payload int    `json:"payloadLen"`
}

// ProbeSpec is what an agent was asked to send.
type ProbeSpec struct {
	Proto    string        `json:"proto"` // icmp, tcp, udp
	Dst      string        `json:"dst"`
	Port     int           `json:"port,omitempty"`
	Count    int           `json:"count"`
	Interval time.Duration `json:"interval"`
	Timeout  time.Duration `json:"timeout"`
	ID       int           `json:"id"` // ICMP id, or the first TCP/UDP source port
	// NAT says the destination may be translated on the way (a Service's
	// virtual IP, a DNAT rule): agents scope their capture to the
	// probe's own identity (ICMP id, TCP/UDP source ports) to and from
	// any address, so that the frames after the translation are
	// captured too, and node agents read the probe's conntrack entries.
	NAT bool `json:"nat,omitempty"`
}

// Probe reports one probe: Event "sent" when it left the socket, then
// exactly one of "reply" (with RTT), "refused" (TCP RST / ICMP port
// unreachable), "unreachable" (other ICMP error, EHOSTUNREACH) or "timeout".
type Probe struct {
	ID     string        `json:"id"` // e.g. "icmp/4711/1", "tcp/40000", "udp/40000/1"
	Seq    int           `json:"seq"`
	Event  string        `json:"event"`
	TS     time.Time     `json:"ts"`
	RTT    time.Duration `json:"rtt,omitempty"`
	Detail string        `json:"detail,omitempty"`
	Done   bool          `json:"done,omitempty"` // the last probe's outcome: nothing more will be sent
}

// Stats are the kernel's counters for one capture socket.
type Stats struct {
	Socket   string `json:"socket"` // "all" or an interface name
	Packets  uint64 `json:"packets"`
	Drops    uint64 `json:"drops"`
	Freezes  uint64 `json:"freezes,omitempty"`
	Emitted  uint64 `json:"emitted"`            // packet lines written
	Filtered uint64 `json:"filtered,omitempty"` // read from the ring after the stop, not reported
	// Summarized counts the frames counted in summary lines instead of
	// written as packet lines, and SummarizedBytes their length on the
	// wire.
	Summarized      uint64 `json:"summarized,omitempty"`
	SummarizedBytes uint64 `json:"summarizedBytes,omitempty"`
	// Budget is the agent's byte budget in bytes per second (0: none);
	// CutLines and CutBytes count the packet and change lines it did
	// not write because the budget was spent, and their encoded size.
	Budget   int64  `json:"budget,omitempty"`
	CutLines uint64 `json:"cutLines,omitempty"`
	CutBytes uint64 `json:"cutBytes,omitempty"`
	// CutPackets counts the frames among CutLines: packet lines cut.
	CutPackets uint64 `json:"cutPackets,omitempty"`
	// NFTraceEvents, NFTraceOther and NFTraceCut count the netfilter trace
	// events the agent read: the probe's (written as nftrace lines),
	// those of other packets (not written), the probe's over the cap
	// (MaxNFTrace, not written); NFTraceOverrun the times the kernel
	// could not queue events (some lost).
	NFTraceEvents  int `json:"nftraceEvents,omitempty"`
	NFTraceOther   int `json:"nftraceOther,omitempty"`
	NFTraceCut     int `json:"nftraceCut,omitempty"`
	NFTraceOverrun int `json:"nftraceOverrun,omitempty"`
	// KernelDrops are the kernel drop reasons program's counters, when
	// it was armed.
	KernelDrops *DropCounts `json:"kernelDrops,omitempty"`
}

// DropCounts are what an agent's kernel drop reasons program counted.
type DropCounts struct {
	Examined uint64 `json:"examined"` // packets the kernel dropped while it was attached, anyone's
	Matched  uint64 `json:"matched"`  // the probe's among them
	Lost     uint64 `json:"lost"`     // of those, not reported: the ring buffer was full
	Written  uint64 `json:"written"`  // drop lines written
}

// Summary is what an agent counted in one interval after its capture
// rate crossed its threshold (Hello.SummarizeAbove): per flow, per
// interface and direction, instead of one packet line per frame. Once an
// agent summarizes, it does so until it exits.
type Summary struct {
	Start time.Time `json:"start"` // interval start; on the first summary, when the agent switched
	End   time.Time `json:"end"`
	First bool      `json:"first,omitempty"` // the first summary of the run
	Above int       `json:"above"`           // the threshold crossed, packets per second
	// Packets and Bytes count every frame of the interval (records and
	// other); Drops the frames the kernel dropped in it (ring full).
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Drops   uint64 `json:"drops"`
	// Records are the largest flow records by packets; Other sums the rest.
	Records []FlowSummary `json:"records"`
	Other   *FlowOther    `json:"other,omitempty"`
}

// Flow identifies a flow: the IP 5-tuple, of the inner packet for VXLAN
// and Geneve frames (so that one flow has one key at every hop); for ARP
// the sender and target IPs. ICMP flows carry the message type and code.
// A later IP fragment, or a frame cut before its transport header, has no
// ports.
type Flow struct {
	EtherType string `json:"ethType"`         // ipv4, ipv6, arp, or 0x88cc …
	Src       string `json:"src,omitempty"`   // IP (ARP: sender IP)
	Dst       string `json:"dst,omitempty"`   // IP (ARP: target IP)
	Proto     string `json:"proto,omitempty"` // tcp, udp, icmp, icmp6, sctp, or the protocol number; arp: who-has, is-at
	SrcPort   int    `json:"sport,omitempty"` // TCP, UDP, SCTP
	DstPort   int    `json:"dport,omitempty"`
	ICMP      string `json:"icmp,omitempty"` // ICMP type name (echo-request, dest-unreachable, type-N), then " code N" unless 0
	VLAN      int    `json:"vlan,omitempty"`
}

// FlowSummary is one flow at one interface in one direction, over one
// summary interval.
type FlowSummary struct {
	Flow
	Index   int       `json:"ifindex"`
	Iface   string    `json:"iface"`
	Dir     string    `json:"dir"`             // in, out (as Packet.Dir)
	Encap   string    `json:"encap,omitempty"` // vxlan, geneve: the frames were encapsulated at this hop
	VNI     uint32    `json:"vni,omitempty"`
	Packets uint64    `json:"packets"`
	Bytes   uint64    `json:"bytes"` // length on the wire (outer frames when encapsulated)
	First   time.Time `json:"first"` // kernel timestamps of the first and last frame
	Last    time.Time `json:"last"`
	Flags   string    `json:"tcpFlags,omitempty"` // every TCP flag seen: SYN,FIN,RST,PSH,ACK,URG
}

// FlowOther sums the flow records of an interval beyond Summary.Records.
type FlowOther struct {
	Records uint64 `json:"records"` // flow records summed here
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// Untracked counts frames that arrived when the agent's flow table
	// was full: their flows are not in Records.
	Untracked uint64 `json:"untracked,omitempty"`
}

// NAT is the conntrack entry of one probe in the agent's network
// namespace when the kernel translated its addresses or ports there (a
// DNAT to a Service endpoint, an SNAT or masquerade): what the connection
// looked like as sent (Orig) and the tuple the kernel expects replies on
// (Reply). A DNAT shows as Reply.Src/SrcPort differing from Orig.Dst/
// DstPort: the packet left towards Reply.Src:Reply.SrcPort; an SNAT as
// Reply.Dst/DstPort differing from Orig.Src/SrcPort. Replies are
// translated back (un-NATed) through the same entry: SeenReply says a
// reply went through it.
type NAT struct {
	TS    time.Time `json:"ts"`              // when the agent read the entry
	Probe string    `json:"probe,omitempty"` // the probe's id (ProbeID)
	Proto string    `json:"proto"`           // tcp, udp, icmp, icmp6
	Orig  Tuple     `json:"orig"`
	Reply Tuple     `json:"reply"`
	DNAT  bool      `json:"dnat,omitempty"` // the kernel's IPS_DST_NAT status bit
	SNAT  bool      `json:"snat,omitempty"` // IPS_SRC_NAT
	// SeenReply is IPS_SEEN_REPLY: a packet came back through the
	// entry (and was translated back).
	SeenReply bool   `json:"seenReply,omitempty"`
	State     string `json:"state,omitempty"` // TCP state (SYN_SENT, ESTABLISHED, CLOSE, …)
	Zone      int    `json:"zone,omitempty"`
	Mark      uint32 `json:"mark,omitempty"`
	// Rules names the rule sets of the namespace that hook NAT for the
	// entry's address family, the candidates for who translated it: "nftables ip kube-proxy",
	// "iptables ip nat (nf_tables)", "iptables-legacy nat". Conntrack
	// does not record which rule translated a connection.
	Rules []string `json:"rules,omitempty"`
}

// Tuple is one direction of a conntrack entry. ICMP tuples carry the
// echo id instead of ports.
type Tuple struct {
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	SrcPort int    `json:"sport,omitempty"`
	DstPort int    `json:"dport,omitempty"`
	ICMPID  int    `json:"icmpId,omitempty"`
}

// Drop is one of the probe's packets that the kernel freed as dropped
// (the skb:kfree_skb tracepoint), with the kernel's reason: an agent run
// with --kernel-drops writes one per drop, at most MaxDrops a run.
type Drop struct {
	TS    time.Time `json:"ts"`              // when the kernel dropped it
	Probe string    `json:"probe,omitempty"` // the probe's id (ProbeID)
	// Reason is the kernel's name of its reason, from its enum
	// skb_drop_reason without the SKB_DROP_REASON_ prefix:
	// NETFILTER_DROP, NO_SOCKET, IP_INNOROUTES, …; Code its value.
	Reason string `json:"reason"`
	Code   uint32 `json:"code"`
	// Location is the kernel function that dropped it (nf_hook_slow,
	// __udp4_lib_rcv); absent when the kernel could not name it.
	Location string `json:"location,omitempty"`
	// The device the packet was on, and the inode of that device's
	// network namespace (a node agent sees its pods' namespaces' drops
	// too); absent when the packet had no device.
	Index   int    `json:"ifindex,omitempty"`
	Iface   string `json:"iface,omitempty"`
	NetNSID uint64 `json:"netnsInode,omitempty"`
	// The packet: its IP header's addresses and protocol, and the TCP/UDP
	// ports or ICMP type, echo id and sequence.
	Proto   string `json:"proto"`
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	SrcPort int    `json:"sport,omitempty"`
	DstPort int    `json:"dport,omitempty"`
	Type    string `json:"type,omitempty"` // ICMP: echo-request, echo-reply
	ICMPID  int    `json:"icmpId,omitempty"`
	ICMPSeq int    `json:"icmpSeq,omitempty"`
}

// Error is a problem the agent ran into. Fatal errors are followed by bye.
type Error struct {
	Msg   string `json:"msg"`
	Fatal bool   `json:"fatal,omitempty"`
}

// Bye is the last line an agent writes.
type Bye struct {
	Reason string `json:"reason"` // one of ByeReasons
}

// MaxNFTrace is the most nftrace lines an agent writes in a run.
const MaxNFTrace = 256

// NFTraceStatus is a node agent's netfilter tracing, in its hello.
type NFTraceStatus struct {
	// Armed: the tracing table is in place; the probe's packets are traced.
	Armed bool `json:"armed"`
	// Table is the tracing table's name (families inet, and bridge when
	// the kernel has it): the kernel deletes it when the agent's socket
	// closes.
	Table string `json:"table,omitempty"`
	// Unavailable says why the agent does not trace (no NET_ADMIN, no
	// nf_tables, turned off).
	Unavailable string `json:"unavailable,omitempty"`
	// Legacy lists the iptables-legacy tables of the namespace
	// ("iptables-legacy filter"): their rules are not in nf_tables, and a
	// drop there cannot be named.
	Legacy []string `json:"legacy,omitempty"`
}

// NFTrace is one nf_tables trace event of the probe's packet (or its
// answer) in the agent's namespace: a rule that gave a verdict, a base
// chain's policy, or the end of a regular chain.
type NFTrace struct {
	TS    time.Time `json:"ts"`              // when the agent read it
	Probe string    `json:"probe,omitempty"` // the probe's id ("tcp/1")
	Reply bool      `json:"reply,omitempty"` // the answer to the probe
	// ID is the kernel's trace id: the same for every event of one
	// packet's way through the namespace.
	ID      uint32 `json:"id"`
	Family  string `json:"family"` // the chain's: ip, ip6, inet, bridge, arp, netdev
	Table   string `json:"table"`
	Chain   string `json:"chain"`
	Handle  uint64 `json:"handle,omitempty"`
	Type    string `json:"type"`    // rule, policy, return
	Verdict string `json:"verdict"` // accept, drop, queue, jump, goto, return, continue, stolen, …
	Target  string `json:"target,omitempty"`
	Queue   int    `json:"queue,omitempty"`
	// Rule is the rule as nft lists it (without counter values).
	Rule string `json:"rule,omitempty"`
	// IPTables: the table is laid out as iptables-nft lays out its own
	// (filter, nat, mangle, raw, security of family ip or ip6).
	IPTables bool   `json:"iptables,omitempty"`
	Iif      string `json:"iif,omitempty"`
	Oif      string `json:"oif,omitempty"`
}
