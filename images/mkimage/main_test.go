package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// build compiles mkimage once per test.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mkimage")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDigestIsTheIndexAndReproducible builds the same multi-arch image
// twice and checks, reading the OCI layout with archive/tar and sha256
// only (the OCI image layout spec: index.json points at the image index
// by the sha256 of its blob), that the digest -digest writes is the
// index's, and that the same inputs give the same digest: what lets a
// release pin its default image to a digest computed before it pushes.
func TestDigestIsTheIndexAndReproducible(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		if err := os.MkdirAll(filepath.Join(dir, arch), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, arch, "agent"), []byte("not really an agent for "+arch), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(n string) (digest string, oci string) {
		oci = filepath.Join(dir, n+".tar")
		df := filepath.Join(dir, n+".digest")
		cmd := exec.Command(bin, "-ref", "registry.example/podtrace/podtrace-agent:v1.2.3", "-entrypoint", "/podtrace-agent",
			"-platforms", "linux/amd64 linux/arm64", "-oci", oci, "-digest", df, filepath.Join(dir, "{arch}", "agent")+":/podtrace-agent")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mkimage: %v\n%s", err, out)
		}
		b, err := os.ReadFile(df)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b)), oci
	}
	d1, oci := run("one")
	d2, _ := run("two")
	if d1 != d2 {
		t.Fatalf("the same inputs gave two digests: %s, %s", d1, d2)
	}
	if !strings.HasPrefix(d1, "sha256:") || len(d1) != len("sha256:")+64 {
		t.Fatalf("digest %q is not sha256:<64 hex>", d1)
	}

	blobs := map[string][]byte{}
	f, err := os.Open(oci)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			blobs[h.Name] = b
		}
	}
	var index struct {
		Manifests []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(blobs["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Digest != d1 ||
		index.Manifests[0].MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("index.json points at %+v, want one image index %s", index.Manifests, d1)
	}
	blob, ok := blobs["blobs/sha256/"+strings.TrimPrefix(d1, "sha256:")]
	if !ok {
		t.Fatalf("no blob for %s in the layout", d1)
	}
	sum := sha256.Sum256(blob)
	if "sha256:"+hex.EncodeToString(sum[:]) != d1 {
		t.Fatalf("the blob named %s hashes to %x", d1, sum)
	}
	if !strings.Contains(string(blob), `"architecture":"arm64"`) || !strings.Contains(string(blob), `"architecture":"amd64"`) {
		t.Fatalf("the index does not list both platforms: %s", blob)
	}
}

func TestDigestNeedsOCI(t *testing.T) {
	bin := build(t)
	out, err := exec.Command(bin, "-ref", "x/y:z", "-o", filepath.Join(t.TempDir(), "a.tar"), "-digest", filepath.Join(t.TempDir(), "d"), "a:/a").CombinedOutput()
	if err == nil {
		t.Fatalf("-digest without -oci was accepted:\n%s", out)
	}
}
