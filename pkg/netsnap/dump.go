package netsnap

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// dumpTries bounds how often one netlink table is read when the kernel
// says it changed during the read.
const dumpTries = 8

// dump reads a netlink table (links, addresses, neighbours, routes)
// through list and reads it again when the kernel flags the dump as
// interrupted (NLM_F_DUMP_INTR: the table changed while it was sent in
// several messages, which on a node where pods come and go is routine).
// After dumpTries interrupted reads it keeps the last one: the table as it
// was while in motion, still what the namespace held, rather than no table
// and an agent that cannot start. Any other error is returned as is.
func dump[T any](list func() ([]T, error)) ([]T, error) {
	var out []T
	var err error
	for range dumpTries {
		out, err = list()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, nil
}
