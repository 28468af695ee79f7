// Command mkimage builds a single-layer container image FROM scratch out of local
// files and writes it as a docker-archive tarball (the format of `docker save`),
// which `ctr -n k8s.io images import` and `docker load` accept. It needs no
// registry and no daemon, so air-gapped nodes and the end-to-end cluster can use
// images built from the project's own static binaries.
//
//	mkimage -o agent.tar -ref podtrace.local/podtrace-agent:e2e \
//	    -entrypoint /podtrace-agent bin/podtrace-agent:/podtrace-agent
//
// Each positional argument is SRC:DST: the local file SRC is stored at the
// absolute path DST with mode 0755. The layer also holds /etc/passwd and
// /etc/group (root only) and empty /tmp, /proc, /sys, /dev, /run. All timestamps
// are zero, so the same inputs give the same image digest.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("mkimage: ")
	out := flag.String("o", "", "output tarball (docker-archive)")
	ref := flag.String("ref", "", "image reference, e.g. podtrace.local/workload:e2e")
	entrypoint := flag.String("entrypoint", "", "entrypoint, comma separated")
	cmd := flag.String("cmd", "", "default arguments, comma separated")
	arch := flag.String("arch", "amd64", "image architecture")
	flag.Parse()
	if *out == "" || *ref == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	files, err := parseFiles(flag.Args())
	if err != nil {
		log.Fatal(err)
	}
	layerTar, err := buildLayer(files)
	if err != nil {
		log.Fatal(err)
	}
	img, err := buildImage(layerTar, *arch, split(*entrypoint), split(*cmd))
	if err != nil {
		log.Fatal(err)
	}
	tag, err := name.NewTag(*ref)
	if err != nil {
		log.Fatal(err)
	}
	if err := tarball.WriteToFile(*out, tag, img); err != nil {
		log.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s: %s %s", *out, tag, d)
}

type file struct {
	src, dst string
	data     []byte
}

func parseFiles(args []string) ([]file, error) {
	var fs []file
	for _, a := range args {
		src, dst, ok := strings.Cut(a, ":")
		if !ok || !strings.HasPrefix(dst, "/") {
			return nil, fmt.Errorf("argument %q: want SRC:/DST", a)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		fs = append(fs, file{src: src, dst: path.Clean(dst), data: data})
	}
	return fs, nil
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// buildLayer returns an uncompressed tar with the skeleton and the given files.
func buildLayer(files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := map[string]bool{}
	var werr error
	mkdirAll := func(d string) {
		d = strings.Trim(d, "/")
		if d == "" || d == "." {
			return
		}
		parts := strings.Split(d, "/")
		for i := range parts {
			p := strings.Join(parts[:i+1], "/") + "/"
			if dirs[p] {
				continue
			}
			dirs[p] = true
			mode := int64(0o755)
			if p == "tmp/" {
				mode = 0o1777
			}
			werr = errors.Join(werr, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p, Mode: mode, ModTime: epoch}))
		}
	}
	writeFile := func(dst string, data []byte, mode int64) {
		dst = strings.TrimPrefix(dst, "/")
		mkdirAll(path.Dir(dst))
		werr = errors.Join(werr, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dst, Mode: mode, Size: int64(len(data)), ModTime: epoch}))
		_, err := tw.Write(data)
		werr = errors.Join(werr, err)
	}
	for _, d := range []string{"dev", "etc", "proc", "run", "sys", "tmp"} {
		mkdirAll(d)
	}
	writeFile("/etc/passwd", []byte("root:x:0:0:root:/:/sbin/nologin\n"), 0o644)
	writeFile("/etc/group", []byte("root:x:0:\n"), 0o644)
	sort.Slice(files, func(i, j int) bool { return files[i].dst < files[j].dst })
	for _, f := range files {
		writeFile(f.dst, f.data, 0o755)
	}
	werr = errors.Join(werr, tw.Close())
	return buf.Bytes(), werr
}

func buildImage(layerTar []byte, arch string, entrypoint, cmd []string) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = arch
	cf.Config.Env = []string{"PATH=/"}
	cf.Config.Entrypoint = entrypoint
	cf.Config.Cmd = cmd
	return mutate.ConfigFile(img, cf)
}
