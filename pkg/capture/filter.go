package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Classic BPF opcodes (linux/filter.h) used to rewrite return instructions.
const (
	opRetK   = 0x06 // BPF_RET|BPF_K
	opRetA   = 0x16 // BPF_RET|BPF_A
	opJa     = 0x05 // BPF_JMP|BPF_JA
	opJgtK   = 0x25 // BPF_JMP|BPF_JGT|BPF_K
	maxInsns = 4096 // BPF_MAXINSNS
)

// clampSnaplen turns filter into the program attached to the socket. A
// classic BPF filter's return value is the number of bytes the kernel
// keeps, so the snap length is enforced in the kernel by lowering every
// non-zero "ret #k" to snaplen and by sending every "ret a" to a trailer
// that returns min(a, snaplen). Instructions keep their positions, so jump
// offsets stay valid. A nil filter becomes "ret #snaplen".
func clampSnaplen(filter []bpf.RawInstruction, snaplen int) ([]unix.SockFilter, error) {
	if len(filter) == 0 {
		return []unix.SockFilter{{Code: opRetK, K: uint32(snaplen)}}, nil
	}
	prog := make([]unix.SockFilter, len(filter), len(filter)+3)
	trailer := len(filter)
	usesA := false
	for i, ins := range filter {
		prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		switch ins.Op {
		case opRetK:
			if ins.K > uint32(snaplen) {
				prog[i].K = uint32(snaplen)
			}
		case opRetA:
			prog[i] = unix.SockFilter{Code: opJa, K: uint32(trailer - i - 1)}
			usesA = true
		}
	}
	if usesA {
		prog = append(prog,
			unix.SockFilter{Code: opJgtK, Jt: 0, Jf: 1, K: uint32(snaplen)},
			unix.SockFilter{Code: opRetK, K: uint32(snaplen)},
			unix.SockFilter{Code: opRetA},
		)
	}
	if len(prog) > maxInsns {
		return nil, fmt.Errorf("capture: filter has %d instructions; the kernel accepts at most %d", len(filter), maxInsns)
	}
	return prog, nil
}
