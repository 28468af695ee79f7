package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNSDir is where named network namespaces are bind-mounted, as by
// `ip netns add`.
const NetNSDir = "/var/run/netns"

// nsPath is the file of a named network namespace.
func nsPath(name string) string { return filepath.Join(NetNSDir, name) }

// ensureNetNSDir creates NetNSDir and makes it a shared mount point the
// way iproute2 does, so that namespaces mounted there are seen by
// `ip netns exec` and by other mount namespaces.
func ensureNetNSDir() error {
	if err := os.MkdirAll(NetNSDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NetNSDir, err)
	}
	err := unix.Mount("", NetNSDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself, then share it.
		if err := unix.Mount(NetNSDir, NetNSDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s: %w", NetNSDir, err)
		}
		err = unix.Mount("", NetNSDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", NetNSDir, err)
	}
	return nil
}

// onFreshThread runs fn on an OS thread of its own that is thrown away
// afterwards (its goroutine exits still locked), so that a namespace
// switch made there can never leak into other goroutines.
func onFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("panic: %v", r)
			}
		}()
		errc <- fn()
	}()
	return <-errc
}

// inNS runs fn on a throw-away thread inside the named namespace.
func inNS(name string, fn func() error) error { return inNSPath(nsPath(name), fn) }

// inNSPath runs fn on a throw-away thread inside the namespace at path.
func inNSPath(path string, fn func() error) error {
	name := path
	return onFreshThread(func() error {
		h, err := netns.GetFromPath(path)
		if err != nil {
			return fmt.Errorf("open namespace %s: %w", name, err)
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter namespace %s: %w", name, err)
		}
		return fn()
	})
}

// createNS creates the named network namespace like `ip netns add`, brings
// its loopback up and applies sysctls (keys relative to /proc/sys, e.g.
// "net/ipv4/ip_forward"; a key whose file does not exist in the namespace
// is skipped). It fails with os.ErrExist if the name is taken. On error
// nothing is left behind.
func createNS(name string, sysctls [][2]string) error {
	path := nsPath(name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("namespace %s already exists (another lab with this prefix?): %w", name, os.ErrExist)
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	err = onFreshThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare network namespace: %w", err)
		}
		self := "/proc/thread-self/ns/net"
		if _, err := os.Stat(self); err != nil {
			self = fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		}
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount namespace %s: %w", name, err)
		}
		// From here the namespace exists; the caller removes it on error.
		for _, kv := range sysctls {
			if err := writeSysctl(kv[0], kv[1]); err != nil {
				return fmt.Errorf("namespace %s: %w", name, err)
			}
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("namespace %s: loopback: %w", name, err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("namespace %s: set lo up: %w", name, err)
		}
		return nil
	})
	if err != nil {
		_ = deleteNS(name)
		return err
	}
	return nil
}

// writeSysctl writes a sysctl of the calling thread's network namespace:
// the kernel resolves /proc/sys/net against the namespace of the task that
// opens the file. Missing keys are skipped.
func writeSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", key)
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
	}
	return nil
}

// deleteNS removes a named namespace like `ip netns del`: detach the bind
// mount and remove the file. The kernel frees the namespace, and every
// link still in it, once nothing else holds it. A missing one is fine.
func deleteNS(name string) error {
	path := nsPath(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
