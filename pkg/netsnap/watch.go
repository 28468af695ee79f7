package netsnap

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// maxTracked bounds the entries Watch remembers per kind (neighbours, FDB,
// links) to report what an entry was before a change. Beyond it, new
// entries are still reported but their previous value is not known.
const maxTracked = 16384

// rcvBuf is the receive buffer asked for the subscription sockets, so that
// a burst of FDB learning or flushing does not overflow them.
const rcvBuf = 1 << 20

// Watch subscribes to neighbour (IPv4, IPv6), bridge FDB and link changes
// of the current network namespace and calls emit once per kernel
// notification, with TS set when it was received, What "neigh", "fdb" or
// "link", Action "new", "changed" or "deleted", and Was the previous value
// when known: "MAC STATE" for a neighbour, the port name for an FDB entry
// (with " STATE" when only the state changed), the operational state for a
// link. Notifications Take would leave out (NOARP neighbours, a port's
// own multicast FDB entries) are skipped. Watch seeds its memory of previous values from a listing taken
// right after subscribing.
//
// The subscription is established before Watch returns; ready is closed
// then. emit is called from a single goroutine, in kernel order; it should
// not block for long (the kernel drops notifications when the socket
// buffer overflows). Watch stops when ctx is done. If a socket fails
// before that (for example on buffer overflow), Watch subscribes again
// and re-seeds; changes in between are lost.
func Watch(ctx context.Context, emit func(wire.Change)) (<-chan struct{}, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("current network namespace: %w", err)
	}
	w := &watcher{ns: ns, emit: emit}
	// Entering a namespace (setns) needs CAP_SYS_ADMIN, which an agent in a
	// pod does not have: when the calling thread is in the process's own
	// namespace (the agent's case), sockets are opened where they are.
	if self, err := netns.GetFromPath("/proc/self/ns/net"); err == nil {
		w.own = self.Equal(ns)
		self.Close()
	}
	if err := w.subscribe(ctx); err != nil {
		ns.Close()
		return nil, err
	}
	ready := make(chan struct{})
	close(ready)
	go w.run(ctx)
	return ready, nil
}

type watcher struct {
	ns   netns.NsHandle
	own  bool // ns is the process's namespace: no setns needed
	emit func(wire.Change)

	done    chan struct{}
	neighCh chan netlink.NeighUpdate
	linkCh  chan netlink.LinkUpdate

	names map[int]string
	links map[int]wire.Link
	neigh map[string]wire.Neigh
	fdb   map[string]wire.FDB
}

// subscribe opens both subscriptions in the watched namespace and seeds the
// maps from a listing taken after them.
func (w *watcher) subscribe(ctx context.Context) error {
	w.done = make(chan struct{})
	w.neighCh = make(chan netlink.NeighUpdate, 256)
	w.linkCh = make(chan netlink.LinkUpdate, 64)
	var ns *netns.NsHandle
	if !w.own {
		ns = &w.ns
	}
	if err := netlink.NeighSubscribeWithOptions(w.neighCh, w.done, netlink.NeighSubscribeOptions{
		Namespace: ns, ReceiveBufferSize: rcvBuf,
	}); err != nil {
		close(w.done)
		return fmt.Errorf("subscribe to neighbour changes: %w", err)
	}
	if err := netlink.LinkSubscribeWithOptions(w.linkCh, w.done, netlink.LinkSubscribeOptions{
		Namespace: ns, ReceiveBufferSize: rcvBuf,
	}); err != nil {
		close(w.done)
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	if err := w.seed(); err != nil {
		close(w.done)
		return err
	}
	return nil
}

func (w *watcher) seed() error {
	var h *netlink.Handle
	var err error
	if w.own {
		h, err = netlink.NewHandle()
	} else {
		h, err = netlink.NewHandleAt(w.ns)
	}
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	w.names = map[int]string{}
	w.links = map[int]wire.Link{}
	w.neigh = map[string]wire.Neigh{}
	w.fdb = map[string]wire.FDB{}
	ls, err := dump(h.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	masters := map[int]int{}
	for _, l := range ls {
		wl := toLink(l)
		w.names[wl.Index] = wl.Name
		masters[wl.Index] = wl.Master
		if len(w.links) < maxTracked {
			w.links[wl.Index] = wl
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6, unix.AF_BRIDGE} {
		ns, err := dump(func() ([]netlink.Neigh, error) { return h.NeighList(0, fam) })
		if err != nil {
			return fmt.Errorf("list neighbours: %w", err)
		}
		for _, n := range ns {
			if fam == unix.AF_BRIDGE {
				if len(w.fdb) < maxTracked {
					w.fdb[fdbKey(n)] = toFDB(n, w.names, masters)
				}
			} else if len(w.neigh) < maxTracked {
				w.neigh[neighKey(n)] = toNeigh(n, w.names)
			}
		}
	}
	return nil
}

func (w *watcher) run(ctx context.Context) {
	defer w.ns.Close()
	for {
		select {
		case <-ctx.Done():
			w.stop()
			return
		case u, ok := <-w.neighCh:
			if !ok {
				w.resubscribe(ctx)
				continue
			}
			w.onNeigh(u)
		case u, ok := <-w.linkCh:
			if !ok {
				w.resubscribe(ctx)
				continue
			}
			w.onLink(u)
		}
	}
}

// stop closes the subscriptions and drains their channels, so that the
// library's reader goroutines never block on a send.
func (w *watcher) stop() {
	close(w.done)
	for range w.neighCh {
	}
	for range w.linkCh {
	}
}

func (w *watcher) resubscribe(ctx context.Context) {
	w.stop()
	for delay := 10 * time.Millisecond; ; delay *= 2 {
		if ctx.Err() != nil {
			// run sees ctx done next and calls stop again: give it
			// closed channels and a fresh done to close.
			w.done = make(chan struct{})
			w.neighCh = make(chan netlink.NeighUpdate)
			w.linkCh = make(chan netlink.LinkUpdate)
			close(w.neighCh)
			close(w.linkCh)
			return
		}
		if err := w.subscribe(ctx); err == nil {
			return
		}
		if delay > time.Second {
			delay = time.Second
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

func neighKey(n netlink.Neigh) string {
	return fmt.Sprintf("%d/%d/%s", n.Family, n.LinkIndex, n.IP)
}

// fdbKey identifies an FDB entry: a bridge (master) entry by bridge, MAC
// and VLAN, so that a MAC moving between ports is a change; a device's own
// (self) entry by device, MAC, VLAN and VXLAN destination.
func fdbKey(n netlink.Neigh) string {
	if n.Flags&netlink.NTF_SELF == 0 {
		m := n.MasterIndex
		if m == 0 {
			m = -n.LinkIndex
		}
		return fmt.Sprintf("m/%d/%s/%d", m, n.HardwareAddr, n.Vlan)
	}
	return fmt.Sprintf("s/%d/%s/%d/%s", n.LinkIndex, n.HardwareAddr, n.Vlan, n.IP)
}

func (w *watcher) onNeigh(u netlink.NeighUpdate) {
	c := wire.Change{TS: time.Now()}
	del := u.Type == unix.RTM_DELNEIGH
	if u.Family == unix.AF_BRIDGE && !keepFDB(u.Neigh) ||
		u.Family != unix.AF_BRIDGE && !keepNeigh(u.Neigh, w.names) {
		return
	}
	if u.Family == unix.AF_BRIDGE {
		masters := map[int]int{}
		if l, ok := w.links[u.LinkIndex]; ok {
			masters[u.LinkIndex] = l.Master
		}
		f := toFDB(u.Neigh, w.names, masters)
		k := fdbKey(u.Neigh)
		c.What, c.FDB = "fdb", &f
		old, had := w.fdb[k]
		c.Action = action(del, had)
		if had {
			c.Was = old.Port
			if old.Port == f.Port && old.Flags != f.Flags {
				c.Was = old.Port + " " + old.Flags
			}
		}
		if del {
			delete(w.fdb, k)
		} else if had || len(w.fdb) < maxTracked {
			w.fdb[k] = f
		}
	} else {
		n := toNeigh(u.Neigh, w.names)
		k := neighKey(u.Neigh)
		c.What, c.Neigh = "neigh", &n
		old, had := w.neigh[k]
		c.Action = action(del, had)
		if had {
			c.Was = old.State
			if old.MAC != "" {
				c.Was = old.MAC + " " + old.State
			}
		}
		if del {
			delete(w.neigh, k)
		} else if had || len(w.neigh) < maxTracked {
			w.neigh[k] = n
		}
	}
	w.emit(c)
}

func (w *watcher) onLink(u netlink.LinkUpdate) {
	if u.Link == nil || u.Link.Attrs() == nil {
		return
	}
	l := toLink(u.Link)
	del := u.Header.Type == unix.RTM_DELLINK
	old, had := w.links[l.Index]
	c := wire.Change{TS: time.Now(), What: "link", Link: &l, Action: action(del, had)}
	if had {
		c.Was = linkWas(old, l)
	}
	if del {
		delete(w.links, l.Index)
		delete(w.names, l.Index)
	} else {
		w.names[l.Index] = l.Name
		if had || len(w.links) < maxTracked {
			w.links[l.Index] = l
		}
	}
	w.emit(c)
}

// linkWas describes what a link was before a change: its state, or the
// attribute that changed when the state did not.
func linkWas(old, now wire.Link) string {
	switch {
	case old.State != now.State:
		return old.State
	case old.Master != now.Master:
		return fmt.Sprintf("master %d", old.Master)
	case old.Name != now.Name:
		return "name " + old.Name
	case old.MAC != now.MAC:
		return "mac " + old.MAC
	case old.MTU != now.MTU:
		return fmt.Sprintf("mtu %d", old.MTU)
	case old.Promisc != now.Promisc:
		if old.Promisc {
			return "promisc"
		}
		return "nopromisc"
	}
	return old.State
}

func action(del, had bool) string {
	switch {
	case del:
		return "deleted"
	case had:
		return "changed"
	default:
		return "new"
	}
}
