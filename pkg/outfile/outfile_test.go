package outfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// mode is the permission bits of path as stat(2) reports them.
func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fs.FileMode(st.Mode & 0o7777)
}

func write(t *testing.T, path, text string) error {
	t.Helper()
	f, err := Create(path)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	return f.Commit()
}

func TestFilesAre0600InDirectoriesCreated0700(t *testing.T) {
	old := syscall.Umask(0o022) // the usual umask: what it lets through is what a user gets
	defer syscall.Umask(old)
	root := t.TempDir()
	path := filepath.Join(root, "cases", "4711", "trace.pcapng")
	if err := write(t, path, "frames"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]fs.FileMode{
		path:                         0o600,
		filepath.Join(root, "cases"): 0o700,
		filepath.Dir(path):           0o700,
	} {
		if got := mode(t, p); got != want {
			t.Errorf("%s: mode %04o, want %04o", p, got, want)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != "frames" {
		t.Errorf("contents %q", b)
	}
	// An existing world-readable file is replaced by a 0600 one, and
	// nothing else is left in the directory.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := write(t, path, "again"); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, path); got != 0o600 {
		t.Errorf("rewritten file: mode %04o, want 0600", got)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the file only", len(entries))
	}
	// A directory made by Dir is 0700 too; an existing one keeps its mode.
	dir := filepath.Join(root, "rec")
	if created, err := Dir(dir); err != nil || !created {
		t.Fatalf("Dir: created %v, %v", created, err)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("%s: mode %04o, want 0700", dir, got)
	}
	if created, err := Dir(root); err != nil || created {
		t.Errorf("Dir of an existing directory: created %v, %v", created, err)
	}
}

func TestSymlinkAtTheTargetIsRefused(t *testing.T) {
	root := t.TempDir()
	secret := filepath.Join(root, "victim")
	if err := os.WriteFile(secret, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "trace.pcapng")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	err := write(t, link, "frames")
	if err == nil || !strings.Contains(err.Error(), link) || !strings.Contains(err.Error(), "symbolic link") || strings.Contains(err.Error(), "\n") {
		t.Errorf("write through a link: %v; want a one-line refusal naming %s", err, link)
	}
	// A link planted after the file was opened is refused at Commit.
	late := filepath.Join(root, "late.pcapng")
	f, err := Create(late)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, late); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("commit over a link planted meanwhile: %v; want a refusal", err)
	}
	// A dangling link (the attacker's file does not exist yet) too.
	dangling := filepath.Join(root, "dangling.pcapng")
	if err := os.Symlink(filepath.Join(root, "not-yet"), dangling); err != nil {
		t.Fatal(err)
	}
	if err := write(t, dangling, "frames"); err == nil {
		t.Error("write through a dangling link succeeded")
	}
	if _, err := os.Lstat(filepath.Join(root, "not-yet")); err == nil {
		t.Error("the dangling link's target was created")
	}
	if b, _ := os.ReadFile(secret); string(b) != "keep me" {
		t.Errorf("the link's target was written: %q", b)
	}
	// A directory given as --save DIR that is a link, and a file where a
	// directory is wanted.
	dirLink := filepath.Join(root, "rec")
	if err := os.Symlink(root, dirLink); err != nil {
		t.Fatal(err)
	}
	if _, err := Dir(dirLink); err == nil || !strings.Contains(err.Error(), dirLink) {
		t.Errorf("Dir through a link: %v; want a refusal naming it", err)
	}
	if _, err := Dir(secret); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Dir of a file: %v", err)
	}
	if err := write(t, root, "x"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory as the file: %v", err)
	}
	// Nothing half-written is left behind by the refusals.
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".part") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	root := t.TempDir()
	f, err := Create(filepath.Join(root, "x.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("half")
	f.Abort()
	f.Abort()
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("after Abort the directory holds %d entries", len(entries))
	}
	if err := f.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
}
