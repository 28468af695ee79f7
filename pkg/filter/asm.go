package filter

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/net/bpf"
)

// The assembler lays out an ir tree as straight-line code with forward
// jumps to labels (short-circuit evaluation), removes loads whose value is
// already in a register, and resolves labels to jump offsets, inserting a
// long unconditional jump where a conditional one would exceed 255.

type itemKind int

const (
	itPlain itemKind = iota
	itLabel
	itCond
	itJump
)

type item struct {
	kind  itemKind
	ins   bpf.Instruction // itPlain
	cond  bpf.JumpTest    // itCond
	k     uint32
	useX  bool
	t, f  int // itCond targets; itJump uses t; itLabel defines t
	alive bool
}

// MaxInstructions is the kernel's limit on classic BPF program length.
const MaxInstructions = 4096

type assembler struct {
	items  []item
	labels int
}

func (a *assembler) label() int  { a.labels++; return a.labels - 1 }
func (a *assembler) place(l int) { a.items = append(a.items, item{kind: itLabel, t: l}) }
func (a *assembler) jump(l int)  { a.items = append(a.items, item{kind: itJump, t: l}) }

func (a *assembler) gen(n ir, t, f int) {
	switch n := n.(type) {
	case irConst:
		if n {
			a.jump(t)
		} else {
			a.jump(f)
		}
	case irAnd:
		if len(n) == 0 {
			a.jump(t)
			return
		}
		for _, x := range n[:len(n)-1] {
			l := a.label()
			a.gen(x, l, f)
			a.place(l)
		}
		a.gen(n[len(n)-1], t, f)
	case irOr:
		if len(n) == 0 {
			a.jump(f)
			return
		}
		for _, x := range n[:len(n)-1] {
			l := a.label()
			a.gen(x, t, l)
			a.place(l)
		}
		a.gen(n[len(n)-1], t, f)
	case *irNot:
		a.gen(n.x, f, t)
	case *irLeaf:
		for _, ins := range n.code {
			a.items = append(a.items, item{kind: itPlain, ins: ins})
		}
		if n.always {
			a.jump(t)
		} else {
			a.items = append(a.items, item{kind: itCond, cond: n.cond, k: n.k, useX: n.useX, t: t, f: f})
		}
	default:
		panic(fmt.Sprintf("filter: unknown ir %T", n))
	}
}

// regState is what the registers are known to hold: a description of the
// load that produced the value, or "" if unknown.
type regState struct{ a, x string }

func merge(s, o regState) regState {
	if s.a != o.a {
		s.a = ""
	}
	if s.x != o.x {
		s.x = ""
	}
	return s
}

// dropRedundantLoads removes loads of values the register already holds on
// every path. All jumps go forward, so one pass in order suffices.
func (a *assembler) dropRedundantLoads() {
	incoming := map[int][]regState{}
	var cur regState
	live := true // whether control can fall through to the current item
	out := a.items[:0]
	for _, it := range a.items {
		switch it.kind {
		case itLabel:
			states := incoming[it.t]
			if live {
				states = append(states, cur)
			}
			if len(states) == 0 {
				cur, live = regState{}, false
			} else {
				cur, live = states[0], true
				for _, s := range states[1:] {
					cur = merge(cur, s)
				}
			}
			out = append(out, it)
			continue
		case itCond:
			incoming[it.t] = append(incoming[it.t], cur)
			incoming[it.f] = append(incoming[it.f], cur)
			live = false
			out = append(out, it)
			continue
		case itJump:
			if live {
				incoming[it.t] = append(incoming[it.t], cur)
			}
			live = false
			out = append(out, it)
			continue
		}
		if !live {
			continue // unreachable
		}
		switch ins := it.ins.(type) {
		case bpf.LoadAbsolute:
			k := "abs" + strconv.Itoa(int(ins.Off)) + "/" + strconv.Itoa(ins.Size)
			if cur.a == k {
				continue
			}
			cur.a = k
		case bpf.LoadIndirect:
			k := ""
			if cur.x != "" {
				k = "ind(" + cur.x + ")" + strconv.Itoa(int(ins.Off)) + "/" + strconv.Itoa(ins.Size)
			}
			if k != "" && cur.a == k {
				continue
			}
			cur.a = k
		case bpf.LoadMemShift:
			k := "msh" + strconv.Itoa(int(ins.Off))
			if cur.x == k {
				continue
			}
			cur.x = k
		case bpf.LoadScratch:
			k := "mem" + strconv.Itoa(ins.N) + ";"
			if ins.Dst == bpf.RegX {
				if cur.x == k {
					continue
				}
				cur.x = k
			} else {
				if cur.a == k {
					continue
				}
				cur.a = k
			}
		case bpf.StoreScratch:
			k := "mem" + strconv.Itoa(ins.N) + ";"
			if strings.Contains(cur.a, k) {
				cur.a = ""
			}
			if strings.Contains(cur.x, k) {
				cur.x = ""
			}
		case bpf.TAX:
			cur.x = cur.a
		case bpf.TXA:
			cur.a = cur.x
		case bpf.LoadConstant:
			k := "const" + strconv.Itoa(int(ins.Val))
			if ins.Dst == bpf.RegX {
				cur.x = k
			} else {
				cur.a = k
			}
		case bpf.RetA, bpf.RetConstant:
			out = append(out, it)
			live = false
			continue
		default: // ALU, negation, extensions: A changes
			cur.a = ""
		}
		out = append(out, it)
	}
	a.items = out
}

// resolve lays out the items and returns the final program.
func (a *assembler) resolve() ([]bpf.Instruction, error) {
	// Drop jumps to the label that follows them.
	out := a.items[:0]
	for i, it := range a.items {
		if it.kind == itJump && fallsInto(a.items[i+1:], it.t) {
			continue
		}
		out = append(out, it)
	}
	a.items = out
	for {
		pos := make([]int, a.labels)
		n := 0
		for _, it := range a.items {
			if it.kind == itLabel {
				pos[it.t] = n
			} else {
				n++
			}
		}
		if n > MaxInstructions {
			return nil, fmt.Errorf("program too long: %d instructions (the kernel allows %d)", n, MaxInstructions)
		}
		var fixed []item
		changed := false
		n = 0
		for _, it := range a.items {
			if it.kind != itCond {
				if it.kind != itLabel {
					n++
				}
				fixed = append(fixed, it)
				continue
			}
			var tramp []item
			if pos[it.t]-n-1 > 255 {
				l := a.label()
				tramp = append(tramp, item{kind: itLabel, t: l}, item{kind: itJump, t: it.t})
				it.t = l
			}
			if pos[it.f]-n-1 > 255 {
				l := a.label()
				tramp = append(tramp, item{kind: itLabel, t: l}, item{kind: itJump, t: it.f})
				it.f = l
			}
			if len(tramp) > 0 {
				changed = true
			}
			fixed = append(fixed, it)
			fixed = append(fixed, tramp...)
			n++
		}
		a.items = fixed
		if changed {
			continue
		}
		prog := make([]bpf.Instruction, 0, n)
		for _, it := range a.items {
			i := len(prog)
			switch it.kind {
			case itPlain:
				prog = append(prog, it.ins)
			case itJump:
				prog = append(prog, bpf.Jump{Skip: uint32(pos[it.t] - i - 1)})
			case itCond:
				st, sf := uint8(pos[it.t]-i-1), uint8(pos[it.f]-i-1)
				if it.useX {
					prog = append(prog, bpf.JumpIfX{Cond: it.cond, SkipTrue: st, SkipFalse: sf})
				} else {
					prog = append(prog, bpf.JumpIf{Cond: it.cond, Val: it.k, SkipTrue: st, SkipFalse: sf})
				}
			}
		}
		return prog, nil
	}
}

// fallsInto reports whether label l is reached from the start of items
// without passing an instruction.
func fallsInto(items []item, l int) bool {
	for _, it := range items {
		if it.kind != itLabel {
			return false
		}
		if it.t == l {
			return true
		}
	}
	return false
}
