// Package outfile writes the files a trace leaves on the user's disk
// (--pcap, --save): they hold what the cluster's pods sent each other, so
// they are readable by their owner only (0600, in directories created
// 0700), and they never write through a symbolic link planted at their
// name. A file is written to a new temporary file beside its target,
// created exclusively, and renamed over the target when complete: a
// failed run leaves no half-written file, and an existing file is
// replaced, not written into.
package outfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DirMode and FileMode are the permissions of what this package creates.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// File is an output file being written.
type File struct {
	*os.File
	target string
	done   bool
}

// Create checks that path can be written (no symbolic link and nothing
// but a regular file at it), creates its missing parent directories
// (DirMode) and returns a file to write whose contents reach path at
// Commit.
func Create(path string) (*File, error) {
	if path == "" {
		return nil, errors.New("no file name given")
	}
	if err := checkTarget(path); err != nil {
		return nil, err
	}
	// The directory it is in may be a link (/tmp is one on macOS): only
	// the file's own name must not be.
	dir := filepath.Dir(path)
	if _, err := ensureDir(dir); err != nil {
		return nil, err
	}
	// os.CreateTemp: O_CREATE|O_EXCL, mode 0600.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.part")
	if err != nil {
		return nil, fmt.Errorf("cannot write in %s: %w", dir, unwrapPath(err))
	}
	if err := f.Chmod(FileMode); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return &File{File: f, target: path}, nil
}

// Check says, creating nothing, whether Create(path) would be refused
// for what is at path or at its directory: a symbolic link or anything but
// a regular file at path, anything but a directory at its directory.
func Check(path string) error {
	if err := checkTarget(path); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// CheckDir says, creating nothing, whether Dir(path) would be refused.
func CheckDir(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link: refusing to write through it; name a directory that is not a link", path)
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s is not a directory", path)
	}
	return nil
}

// Name is the file's target path.
func (f *File) Name() string { return f.target }

// Commit closes the file and puts it at its target path, replacing a
// regular file there; a symbolic link planted there meanwhile is refused.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("%s: already closed", f.target)
	}
	f.done = true
	tmp := f.File.Name()
	if err := f.File.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := checkTarget(f.target); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, f.target); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", f.target, unwrapPath(err))
	}
	return nil
}

// Abort closes the file and removes what was written; after Commit it
// does nothing.
func (f *File) Abort() {
	if f == nil || f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// Dir makes sure path is a directory files can be created in: a symbolic
// link or anything but a directory there is refused; a missing directory
// is created with its missing parents (DirMode). It says whether it
// created path.
func Dir(path string) (created bool, err error) {
	if err := CheckDir(path); err != nil {
		return false, err
	}
	return ensureDir(path)
}

// ensureDir makes sure path is a directory, creating it and its missing
// parents (DirMode) when it does not exist.
func ensureDir(path string) (created bool, err error) {
	fi, err := os.Stat(path)
	switch {
	case err == nil && !fi.IsDir():
		return false, fmt.Errorf("%s is not a directory", path)
	case err == nil:
		return false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	if err := os.MkdirAll(path, DirMode); err != nil {
		return false, fmt.Errorf("cannot create directory %s: %w", path, unwrapPath(err))
	}
	return true, nil
}

// checkTarget refuses a symbolic link or anything but a regular file at
// path; nothing there is fine.
func checkTarget(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w", path, unwrapPath(err))
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link: refusing to write through it; remove the link or name another file", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s exists and is not a regular file", path)
	}
	return nil
}

// unwrapPath drops the operation and path of a *fs.PathError, which the
// messages here name themselves.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
