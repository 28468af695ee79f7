// Command mkimage builds a single-layer container image FROM scratch out of local
// files and writes it as a docker-archive tarball (the format of `docker save`),
// which `ctr -n k8s.io images import` and `docker load` accept, and, for several
// platforms, as an OCI image layout tarball holding a multi-arch image index. It
// needs no registry and no daemon, so air-gapped nodes and the end-to-end cluster
// can use images built from the project's own static binaries.
//
//	mkimage -o agent.tar -ref podtrace.local/podtrace-agent:e2e \
//	    -entrypoint /podtrace-agent bin/podtrace-agent:/podtrace-agent
//
//	mkimage -ref ghcr.io/podtrace/podtrace-agent:v0.1.0 -entrypoint /podtrace-agent \
//	    -platforms 'linux/amd64 linux/arm64' -oci agent-image.tar \
//	    -docker 'agent-image-{arch}.tar' 'bin/{os}_{arch}/podtrace-agent:/podtrace-agent'
//
// Each positional argument is SRC:DST: the local file SRC is stored at the
// absolute path DST with mode 0755; with -platforms, {os} and {arch} in SRC (and
// in the -docker file name) name each platform's file. The layer also holds
// /etc/passwd and /etc/group (root only) and empty /tmp, /proc, /sys, /dev, /run.
// All timestamps are zero, so the same inputs give the same image digest; -digest
// writes the index's digest, which a release pins the plugin's default image to.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("mkimage: ")
	out := flag.String("o", "", "output tarball (docker-archive) of the single platform -arch")
	ref := flag.String("ref", "", "image reference, e.g. podtrace.local/workload:e2e")
	entrypoint := flag.String("entrypoint", "", "entrypoint, comma separated")
	cmd := flag.String("cmd", "", "default arguments, comma separated")
	arch := flag.String("arch", "amd64", "image architecture (without -platforms)")
	platforms := flag.String("platforms", "", "space separated os/arch list, e.g. 'linux/amd64 linux/arm64'")
	ociOut := flag.String("oci", "", "output tarball: OCI image layout with an image index of every platform")
	dockerOut := flag.String("docker", "", "output tarball per platform (docker-archive); {os} and {arch} are replaced")
	digestOut := flag.String("digest", "", "with -oci: file to write the image index's digest to (sha256:…), what a release pins its default image to")
	flag.Parse()
	if (*out == "" && *ociOut == "" && *dockerOut == "") || *ref == "" || flag.NArg() == 0 || (*digestOut != "" && *ociOut == "") {
		flag.Usage()
		os.Exit(2)
	}
	tag, err := name.NewTag(*ref)
	if err != nil {
		log.Fatal(err)
	}
	plats := []v1.Platform{{OS: "linux", Architecture: *arch}}
	if *platforms != "" {
		plats = nil
		for _, p := range strings.Fields(*platforms) {
			pl, err := v1.ParsePlatform(p)
			if err != nil {
				log.Fatal(err)
			}
			plats = append(plats, *pl)
		}
	}
	var adds []mutate.IndexAddendum
	for _, pl := range plats {
		expand := strings.NewReplacer("{os}", pl.OS, "{arch}", pl.Architecture).Replace
		var args []string
		for _, a := range flag.Args() {
			args = append(args, expand(a))
		}
		files, err := parseFiles(args)
		if err != nil {
			log.Fatal(err)
		}
		for _, f := range files {
			log.Printf("%s: %s → %s, %.2f MiB", pl, f.src, f.dst, mib(int64(len(f.data))))
		}
		layerTar, err := buildLayer(files)
		if err != nil {
			log.Fatal(err)
		}
		img, err := buildImage(layerTar, pl, split(*entrypoint), split(*cmd))
		if err != nil {
			log.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			log.Fatal(err)
		}
		size, err := imageSize(img)
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("image %s %s: %s, %.2f MiB compressed (config + layer)", tag, pl, d, mib(size))
		for _, o := range []string{*out, *dockerOut} {
			if o == "" {
				continue
			}
			o = expand(o)
			if err := tarball.WriteToFile(o, tag, img); err != nil {
				log.Fatal(err)
			}
			logFile(o, "docker-archive, "+pl.String())
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pl}})
	}
	if *ociOut != "" {
		idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
		d, err := idx.Digest()
		if err != nil {
			log.Fatal(err)
		}
		if err := writeOCI(*ociOut, tag, idx); err != nil {
			log.Fatal(err)
		}
		logFile(*ociOut, fmt.Sprintf("OCI image layout, index %s of %d platforms", d, len(adds)))
		if *digestOut != "" {
			if err := os.WriteFile(*digestOut, []byte(d.String()+"\n"), 0o644); err != nil {
				log.Fatal(err)
			}
		}
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func logFile(p, what string) {
	st, err := os.Stat(p)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s: %s, %.2f MiB", p, what, mib(st.Size()))
}

// imageSize is what a registry or node stores for img: config and
// compressed layers.
func imageSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

// writeOCI writes idx as an OCI image layout in a tarball. index.json
// names it with the annotations containerd and Docker read on import.
func writeOCI(out string, tag name.Tag, idx v1.ImageIndex) error {
	dir, err := os.MkdirTemp("", "mkimage-oci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          tag.Name(),
		"org.opencontainers.image.ref.name": tag.TagStr(),
	})); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if d.IsDir() {
			h.Name, h.Mode, h.Typeflag = h.Name+"/", 0o755, tar.TypeDir
			return tw.WriteHeader(h)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	err = errors.Join(err, tw.Close(), f.Close())
	return err
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

func buildImage(layerTar []byte, pl v1.Platform, entrypoint, cmd []string) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = pl.OS
	cf.Architecture = pl.Architecture
	cf.Variant = pl.Variant
	cf.Config.Env = []string{"PATH=/"}
	cf.Config.Entrypoint = entrypoint
	cf.Config.Cmd = cmd
	return mutate.ConfigFile(img, cf)
}
