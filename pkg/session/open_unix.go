//go:build unix

package session

import (
	"os"
	"syscall"
)

// openNonBlocking opens name read-only without waiting for a writer, had
// it become a FIFO since it was checked.
func openNonBlocking(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
