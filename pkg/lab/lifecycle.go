package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var prefixRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,23}$`)

// NewPrefix returns a fresh random lab prefix, "pt" + 4 hex digits.
func NewPrefix() string {
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "pt" + hex.EncodeToString(b)
}

// failAt, when set (by tests), makes Build fail after the named step.
var failAt string

// Build creates the topology. On any error, including ctx being done, it
// removes everything it made and returns an error naming the step that
// failed. The caller owns the result and must call Teardown.
func Build(ctx context.Context, o Options) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: building network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
	}
	if o.Prefix == "" {
		o.Prefix = NewPrefix()
	}
	if !prefixRE.MatchString(o.Prefix) {
		return nil, fmt.Errorf("lab: invalid prefix %q: use up to 24 lower-case letters, digits and dashes", o.Prefix)
	}
	if o.Topology == "" {
		o.Topology = "bridge"
	}
	build := topology(o.Topology)
	if build == nil {
		return nil, fmt.Errorf("lab: unknown topology %q (want one of %s)", o.Topology, strings.Join(Topologies, ", "))
	}
	if err := ensureNetNSDir(); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	lock, err := holdLock(o.Prefix)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	// Capacity so that *Node pointers taken while building stay valid.
	l := &Lab{Prefix: o.Prefix, Topology: o.Topology, Nodes: make([]Node, 0, 4), lock: lock}
	b := &builder{ctx: ctx, lab: l, progress: o.Progress}
	if err := build(b); err != nil {
		if terr := l.Teardown(); terr != nil {
			return nil, fmt.Errorf("lab %s: %w (and cleaning up: %v)", l.Prefix, err, terr)
		}
		return nil, fmt.Errorf("lab %s: %w", l.Prefix, err)
	}
	if err := b.settle(); err != nil {
		if terr := l.Teardown(); terr != nil {
			return nil, fmt.Errorf("lab %s: %w (and cleaning up: %v)", l.Prefix, err, terr)
		}
		return nil, fmt.Errorf("lab %s: %w", l.Prefix, err)
	}
	b.logf("lab %s ready: topology %s, %d node(s), %d pod(s)", l.Prefix, l.Topology, len(l.Nodes), len(l.Pods))
	return l, nil
}

// Teardown removes every namespace the lab made, and with them every link
// in them: it first deletes the links of the node namespaces (so veth
// pairs are gone when Teardown returns, not when the kernel gets round to
// freeing the namespaces), then unmounts and removes the namespaces. It is
// idempotent and keeps going past errors, returning them joined.
func (l *Lab) Teardown() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for i := len(l.made) - 1; i >= 0; i-- {
		name := l.made[i]
		if _, err := os.Stat(nsPath(name)); err == nil {
			if err := deleteLinks(name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	var kept []string
	for i := len(l.made) - 1; i >= 0; i-- {
		if err := deleteNS(l.made[i]); err != nil {
			errs = append(errs, err)
			kept = append(kept, l.made[i])
		}
	}
	l.made = kept
	if len(kept) == 0 && l.lock != nil {
		_ = os.Remove(l.lock.Name())
		_ = l.lock.Close()
		l.lock = nil
	}
	return errors.Join(errs...)
}

// LockDir holds one lock file per lab that exists in a running process: a
// lab kept with --keep outlives its process and its lock.
const LockDir = "/run/podtrace-lab"

// holdLock takes the lab's lock, or says that another process uses the
// prefix.
func holdLock(prefix string) (*os.File, error) {
	if err := os.MkdirAll(LockDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", LockDir, err)
	}
	f, err := os.OpenFile(filepath.Join(LockDir, prefix+".lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("prefix %q is in use by another running lab", prefix)
	}
	return f, nil
}

// inUse reports whether a running process holds the lab's lock.
func inUse(prefix string) bool {
	f, err := os.Open(filepath.Join(LockDir, prefix+".lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// deleteLinks deletes every link but loopback in a namespace.
func deleteLinks(name string) error {
	return inNS(name, func() error {
		ls, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("namespace %s: list links: %w", name, err)
		}
		var errs []error
		for _, lk := range ls {
			if lk.Attrs().Flags&net.FlagLoopback != 0 {
				continue
			}
			if err := netlink.LinkDel(lk); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("namespace %s: delete %s: %w", name, lk.Attrs().Name, err))
			}
		}
		return errors.Join(errs...)
	})
}

// Leftovers lists the namespaces of a lab prefix that still exist
// ("<prefix>-..."), sorted. With an empty prefix it lists every namespace
// that looks like a lab's ("pt" + 4 hex digits + "-...").
func Leftovers(prefix string) ([]string, error) {
	entries, err := os.ReadDir(NetNSDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	var out []string
	for _, e := range entries {
		if matchPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

var anyLabRE = regexp.MustCompile(`^pt[0-9a-f]{4}-`)

func matchPrefix(name, prefix string) bool {
	if prefix == "" {
		return anyLabRE.MatchString(name)
	}
	return strings.HasPrefix(name, prefix+"-")
}

// Purge removes the namespaces Leftovers(prefix) lists (links inside them
// go with them) and returns their names: cleanup after a lab whose process
// died or that was kept. With an empty prefix it leaves alone the labs that
// a running process still holds (a test's, a trace's in progress).
func Purge(prefix string) ([]string, error) {
	names, err := Leftovers(prefix)
	if err != nil {
		return nil, err
	}
	var errs []error
	var done []string
	for _, n := range names {
		if prefix == "" && inUse(n[:strings.IndexByte(n, '-')]) {
			continue // a lab a running process (a test, a trace) is using
		}
		if err := deleteNS(n); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, n)
	}
	return done, errors.Join(errs...)
}

// settle waits until every link the lab brought up is operationally up in
// every namespace: the kernel reports carrier changes of new veths a little
// later, and a trace should not start while link notifications for the
// lab's own setup are still coming.
func (b *builder) settle() error {
	deadline := time.Now().Add(5 * time.Second)
	for _, ns := range b.lab.made {
		for {
			var pending []string
			err := withHandle(ns, func(h *netlink.Handle) error {
				ls, err := h.LinkList()
				if err != nil {
					return err
				}
				for _, lk := range ls {
					a := lk.Attrs()
					// Veths end up "up"; devices without carrier
					// tracking (vxlan, bridge without ports) stay "unknown".
					settled := a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown && lk.Type() != "veth"
					if a.Flags&net.FlagUp != 0 && a.Flags&net.FlagLoopback == 0 && !settled {
						pending = append(pending, a.Name)
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("namespace %s: %w", ns, err)
			}
			if len(pending) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("namespace %s: links not up after 5s: %s", ns, strings.Join(pending, ", "))
			}
			select {
			case <-b.ctx.Done():
				return b.ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}
