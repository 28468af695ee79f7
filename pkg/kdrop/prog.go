package kdrop

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf/asm"
)

// The event the program writes to the ring buffer, one per dropped skb of
// the probe: fixed offsets, read back by parse.
const (
	oReason  = 0   // u32: enum skb_drop_reason
	oIfindex = 4   // u32: skb->dev->ifindex (0: no device)
	oNetns   = 8   // u32: inode of skb->dev's network namespace
	oIfname  = 16  // [16]byte: skb->dev->name
	oIP      = 32  // [20]byte: the IPv4 header without options
	oL4      = 52  // [8]byte: the first 8 bytes of the transport header
	oSym     = 64  // [64]byte: the kernel function that freed it ("%ps" of location)
	symLen   = 64  //
	oTS      = 128 // u64: CLOCK_BOOTTIME, ns
	evSize   = 136 //
	stackTop = -evSize
	sTmp     = stackTop - 8 // u64 scratch
	sKey     = sTmp - 8     // u32 map key 0
	sArg     = sKey - 8     // u64: the location, snprintf's argument
)

// Counters in the program's counter map (one array entry of three u64).
const (
	cExamined = 0  // every skb the kernel freed as dropped while armed
	cMatched  = 8  // those of the probe
	cLost     = 16 // matched, but the ring buffer was full
	countSize = 24
)

// filterSpec is the probe's identity as the program tests it, in the
// byte order the program reads it (addresses as stored in the header).
type filterSpec struct {
	proto    uint8
	src, dst uint32 // IPv4 addresses as the program loads them from the header
	anyPeer  bool   // the destination may be translated: any peer address and port
	icmpID   uint16 // ICMP echo id
	lo, hi   uint16 // TCP/UDP: the probes' source ports
	port     uint16 // TCP/UDP destination port, 0: any
}

func (p *Probe) filter() (filterSpec, error) {
	s, d := p.Src.Unmap(), p.Dst.Unmap()
	if !s.Is4() || !d.Is4() {
		return filterSpec{}, fmt.Errorf("kernel drops are followed for IPv4 probes only, not %s → %s", p.Src, p.Dst)
	}
	sb, db := s.As4(), d.As4()
	f := filterSpec{src: binary.NativeEndian.Uint32(sb[:]), dst: binary.NativeEndian.Uint32(db[:]), anyPeer: p.NAT}
	count := max(p.Count, 1)
	switch p.Proto {
	case "icmp":
		f.proto, f.icmpID = 1, uint16(p.ID)
	case "tcp", "udp":
		f.proto = 6
		if p.Proto == "udp" {
			f.proto = 17
		}
		if p.ID <= 0 || p.ID+count-1 > 65535 || p.Port < 0 || p.Port > 65535 {
			return filterSpec{}, fmt.Errorf("probe ports %d+%d → %d out of range", p.ID, count, p.Port)
		}
		f.lo, f.hi, f.port = uint16(p.ID), uint16(p.ID+count-1), uint16(p.Port)
	default:
		return filterSpec{}, fmt.Errorf("probe protocol %q: kernel drops follow icmp, tcp and udp probes", p.Proto)
	}
	return f, nil
}

// program assembles the raw tracepoint program for skb:kfree_skb
// (arguments: skb, location, reason). It reads the skb's IPv4 header and
// first transport bytes from skb->head + skb->network_header, keeps only
// the probe's packets in either direction, and for those writes an event:
// the reason, the device and its namespace, the headers, and the freeing
// function's name, printed by the kernel itself ("%ps": a symbol, never an
// address, with no need of /proc/kallsyms).
//
// The maps are referenced by name: "counters", "events", "format".
func program(l *layout, f filterSpec) asm.Instructions {
	const (
		out   = "out"
		rev   = "reverse"
		match = "match"
		sym   = "symbol"
	)
	var in asm.Instructions
	add := func(ins ...asm.Instruction) { in = append(in, ins...) }
	// read copies size bytes from kernel address src+off to the stack.
	read := func(stack int16, size int32, src asm.Register, off int32) {
		add(asm.Mov.Reg(asm.R1, asm.RFP), asm.Add.Imm(asm.R1, int32(stack)),
			asm.Mov.Imm(asm.R2, size), asm.Mov.Reg(asm.R3, src))
		if off != 0 {
			add(asm.Add.Imm(asm.R3, off))
		}
		add(asm.FnProbeReadKernel.Call())
	}
	port := func(off int16) { // r3 = the big-endian port at the event's l4+off
		add(asm.LoadMem(asm.R3, asm.RFP, stackTop+oL4+off, asm.Half), asm.HostTo(asm.BE, asm.R3, asm.Half))
	}
	count := func(off int16) {
		add(asm.Mov.Imm(asm.R1, 1), asm.AddAtomic.Mem(asm.R6, asm.R1, asm.DWord, off))
	}

	// The stack the helpers read must be initialized.
	add(asm.Mov.Imm(asm.R2, 0))
	for off := int16(sArg); off < 0; off += 8 {
		add(asm.StoreMem(asm.RFP, off, asm.R2, asm.DWord))
	}
	add(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, 0, asm.DWord), // skb
		asm.LoadMem(asm.R1, asm.R6, 8, asm.DWord), // location
		asm.StoreMem(asm.RFP, sArg, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, 16, asm.DWord), // reason
		asm.StoreMem(asm.RFP, stackTop+oReason, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference("counters"),
		asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, sKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, out),
		asm.Mov.Reg(asm.R6, asm.R0),
	)
	count(cExamined)
	// The network header: skb->head + skb->network_header.
	read(sTmp, 8, asm.R7, int32(l.skbHead))
	add(asm.JNE.Imm(asm.R0, 0, out), asm.LoadMem(asm.R8, asm.RFP, sTmp, asm.DWord))
	read(sTmp, 2, asm.R7, int32(l.skbNetworkHeader))
	add(asm.JNE.Imm(asm.R0, 0, out), asm.LoadMem(asm.R9, asm.RFP, sTmp, asm.Half),
		asm.JEq.Imm(asm.R9, 0xffff, out), // not set
		asm.Add.Reg(asm.R8, asm.R9))
	read(stackTop+oIP, 20, asm.R8, 0)
	var fragMask [2]byte
	binary.BigEndian.PutUint16(fragMask[:], 0x1fff)
	add(asm.JNE.Imm(asm.R0, 0, out),
		// IPv4, a header of at least 20 bytes: the transport header follows it
		asm.LoadMem(asm.R1, asm.RFP, stackTop+oIP, asm.Byte),
		asm.Mov.Reg(asm.R2, asm.R1), asm.And.Imm(asm.R2, 0xf0), asm.JNE.Imm(asm.R2, 0x40, out),
		asm.And.Imm(asm.R1, 0x0f), asm.LSh.Imm(asm.R1, 2), asm.JLT.Imm(asm.R1, 20, out),
		asm.Add.Reg(asm.R8, asm.R1),
		// not a later fragment
		asm.LoadMem(asm.R1, asm.RFP, stackTop+oIP+6, asm.Half),
		asm.And.Imm(asm.R1, int32(binary.NativeEndian.Uint16(fragMask[:]))), asm.JNE.Imm(asm.R1, 0, out),
		asm.LoadMem(asm.R1, asm.RFP, stackTop+oIP+9, asm.Byte), asm.JNE.Imm(asm.R1, int32(f.proto), out),
	)
	read(stackTop+oL4, 8, asm.R8, 0)
	add(asm.JNE.Imm(asm.R0, 0, out),
		asm.LoadMem(asm.R1, asm.RFP, stackTop+oIP+12, asm.Word), // saddr
		asm.LoadMem(asm.R2, asm.RFP, stackTop+oIP+16, asm.Word), // daddr
	)
	// Sent by the probe's source: src → dst.
	add(asm.JNE.Imm32(asm.R1, int32(f.src), rev))
	if !f.anyPeer {
		add(asm.JNE.Imm32(asm.R2, int32(f.dst), rev))
	}
	l4 := func(fwd bool, miss string) {
		if f.proto == 1 {
			typ := int32(8) // echo request
			if !fwd {
				typ = 0 // echo reply
			}
			add(asm.LoadMem(asm.R3, asm.RFP, stackTop+oL4, asm.Byte), asm.JNE.Imm(asm.R3, typ, miss))
			port(4)
			add(asm.JNE.Imm(asm.R3, int32(f.icmpID), miss))
			return
		}
		own, peer := int16(0), int16(2) // the probe's port, the destination's
		if !fwd {
			own, peer = 2, 0
		}
		port(own)
		add(asm.JLT.Imm(asm.R3, int32(f.lo), miss), asm.JGT.Imm(asm.R3, int32(f.hi), miss))
		if !f.anyPeer && f.port != 0 {
			port(peer)
			add(asm.JNE.Imm(asm.R3, int32(f.port), miss))
		}
	}
	l4(true, rev)
	add(asm.Ja.Label(match))
	// Or sent to it: dst → src.
	add(asm.JNE.Imm32(asm.R2, int32(f.src), out).WithSymbol(rev))
	if !f.anyPeer {
		add(asm.JNE.Imm32(asm.R1, int32(f.dst), out))
	}
	l4(false, out)

	// The probe's: where the kernel had it.
	add(asm.Mov.Imm(asm.R1, 1).WithSymbol(match), asm.AddAtomic.Mem(asm.R6, asm.R1, asm.DWord, cMatched))
	read(sTmp, 8, asm.R7, int32(l.skbDev))
	add(asm.JNE.Imm(asm.R0, 0, sym), asm.LoadMem(asm.R7, asm.RFP, sTmp, asm.DWord), asm.JEq.Imm(asm.R7, 0, sym))
	read(stackTop+oIfindex, 4, asm.R7, int32(l.devIfindex))
	read(stackTop+oIfname, 16, asm.R7, int32(l.devName))
	read(sTmp, 8, asm.R7, int32(l.devNet))
	add(asm.JNE.Imm(asm.R0, 0, sym), asm.LoadMem(asm.R7, asm.RFP, sTmp, asm.DWord), asm.JEq.Imm(asm.R7, 0, sym))
	read(stackTop+oNetns, 4, asm.R7, int32(l.netInum))
	// The freeing function, named by the kernel.
	add(
		asm.Mov.Reg(asm.R1, asm.RFP).WithSymbol(sym), asm.Add.Imm(asm.R1, stackTop+oSym),
		asm.Mov.Imm(asm.R2, symLen),
		asm.LoadMapValue(asm.R3, 0, 0).WithReference("format"),
		asm.Mov.Reg(asm.R4, asm.RFP), asm.Add.Imm(asm.R4, sArg),
		asm.Mov.Imm(asm.R5, 8),
		asm.FnSnprintf.Call(),
		asm.FnKtimeGetBootNs.Call(),
		asm.StoreMem(asm.RFP, stackTop+oTS, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference("events"),
		asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, stackTop),
		asm.Mov.Imm(asm.R3, evSize),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, out),
	)
	count(cLost)
	add(asm.Mov.Imm(asm.R0, 0).WithSymbol(out), asm.Return())
	return in
}
