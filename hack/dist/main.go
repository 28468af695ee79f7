// Command dist builds the release: kubectl-podtrace for every platform and
// podtrace-agent for Linux, with version, commit and the default agent image
// injected by -ldflags -X; one archive per binary and platform (.tar.gz, .zip
// on Windows) holding the binary and LICENSE (and the plugin's completion
// helper, and on Linux the agent the lab and local commands run); the cluster admin's files of deploy/ for this version
// (podtrace-deploy_VERSION.tar.gz, the admission policy admitting the
// release's agent image repository); checksums.txt in sha256sum format; and
// the krew manifest rendered with the release's version, archive URLs and
// checksums.
//
//	go run ./hack/dist -out dist -version v0.1.0 -commit abc1234 \
//	    -agent-image ghcr.io/podtrace/podtrace-agent:v0.1.0 \
//	    -plugin 'linux/amd64 darwin/arm64 windows/amd64' -agent 'linux/amd64'
//
// Archives are reproducible: fixed order, owner root, modification time
// -epoch (the commit time from make).
package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

const pkg = "github.com/podtrace/kubectl-podtrace"

// Config is one release build.
type Config struct {
	Out        string   // output directory
	Version    string   // vX.Y.Z[-pre]
	Commit     string   // short commit
	AgentImage string   // default agent image the plugin starts
	Plugin     []string // GOOS/GOARCH of kubectl-podtrace
	Agent      []string // GOOS/GOARCH of podtrace-agent
	Manifest   string   // krew manifest to render ("" = none)
	Partial    bool     // drop manifest platforms without an archive instead of failing
	Epoch      time.Time
	Root       string // repository root
	Log        io.Writer
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("dist: ")
	var c Config
	var plugin, agent string
	var epoch int64
	flag.StringVar(&c.Out, "out", "dist", "output directory (emptied first)")
	flag.StringVar(&c.Version, "version", "", "release version, vX.Y.Z (semantic version)")
	flag.StringVar(&c.Commit, "commit", "unknown", "commit to record in the binaries")
	flag.StringVar(&c.AgentImage, "agent-image", "", "default agent image recorded in the plugin")
	flag.StringVar(&plugin, "plugin", "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64", "platforms of kubectl-podtrace")
	flag.StringVar(&agent, "agent", "linux/amd64 linux/arm64", "platforms of podtrace-agent")
	flag.StringVar(&c.Manifest, "manifest", "krew-manifest.yaml", "krew manifest to render into the output directory")
	flag.BoolVar(&c.Partial, "partial", false, "render the manifest with only the platforms built")
	flag.Int64Var(&epoch, "epoch", 0, "modification time of archive entries, seconds since 1970")
	flag.Parse()
	c.Plugin, c.Agent = strings.Fields(plugin), strings.Fields(agent)
	c.Epoch = time.Unix(epoch, 0).UTC()
	c.Root, c.Log = ".", os.Stderr
	if err := Run(c); err != nil {
		log.Fatal(err)
	}
}

var semverRE = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// Artifact is one file of the release.
type Artifact struct {
	Name   string // file name in the output directory
	Binary string // the binary it holds
	Size   int64
	BinLen int64
	Sum    string
}

// Run builds everything c asks for and returns after writing checksums.txt
// and the manifest.
func Run(c Config) error {
	if !semverRE.MatchString(c.Version) {
		return fmt.Errorf("version %q is not a semantic version vX.Y.Z[-pre] (krew needs one): set VERSION=v0.1.0 or tag the commit", c.Version)
	}
	if c.AgentImage == "" {
		return errors.New("-agent-image is required")
	}
	license, err := os.ReadFile(filepath.Join(c.Root, "LICENSE"))
	if err != nil {
		return fmt.Errorf("the archives need LICENSE: %w", err)
	}
	helper, err := os.ReadFile(filepath.Join(c.Root, "cmd/kubectl-podtrace/kubectl_complete-podtrace"))
	if err != nil {
		return err
	}
	if err := os.RemoveAll(c.Out); err != nil {
		return err
	}
	build := filepath.Join(c.Out, ".build")
	if err := os.MkdirAll(build, 0o755); err != nil {
		return err
	}
	v := pkg + "/pkg/version."
	// The agent does not record the agent image: a release pins the
	// plugin's default image to the digest of an image holding the agent.
	agentLdflags := "-s -w -X " + v + "Version=" + c.Version + " -X " + v + "Commit=" + c.Commit
	ldflags := agentLdflags + " -X " + v + "AgentImage=" + c.AgentImage
	var arts []Artifact
	// compile builds one binary for one platform, once.
	built := map[string][]byte{}
	compile := func(name, goos, goarch string) (exe string, data []byte, err error) {
		exe = name
		if goos == "windows" {
			exe += ".exe"
		}
		bin := filepath.Join(build, goos+"_"+goarch, exe)
		if b, ok := built[bin]; ok {
			return exe, b, nil
		}
		lf := ldflags
		if name == "podtrace-agent" {
			lf = agentLdflags
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", lf, "-o", bin, "./cmd/"+name)
		cmd.Dir = c.Root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", nil, fmt.Errorf("build %s for %s/%s: %v\n%s", name, goos, goarch, err, out)
		}
		if data, err = os.ReadFile(bin); err != nil {
			return "", nil, err
		}
		built[bin] = data
		return exe, data, nil
	}
	for _, set := range []struct {
		name      string
		platforms []string
	}{{"kubectl-podtrace", c.Plugin}, {"podtrace-agent", c.Agent}} {
		for _, p := range set.platforms {
			goos, goarch, ok := strings.Cut(p, "/")
			if !ok {
				return fmt.Errorf("platform %q: want GOOS/GOARCH", p)
			}
			if set.name == "podtrace-agent" && goos != "linux" {
				return fmt.Errorf("podtrace-agent runs on Linux only, not %s", p)
			}
			start := time.Now()
			exe, data, err := compile(set.name, goos, goarch)
			if err != nil {
				return err
			}
			files := []entry{{exe, data, 0o755}}
			if set.name == "kubectl-podtrace" && goos != "windows" {
				files = append(files, entry{"kubectl_complete-podtrace", helper, 0o755})
			}
			// The lab and local commands run the agent as a process of
			// this machine: the Linux plugin ships it beside itself
			// (krew links only the plugin; it finds the agent next to
			// its own executable, links resolved).
			if set.name == "kubectl-podtrace" && goos == "linux" {
				agentExe, agent, err := compile("podtrace-agent", goos, goarch)
				if err != nil {
					return err
				}
				files = append(files, entry{agentExe, agent, 0o755})
			}
			files = append(files, entry{"LICENSE", license, 0o644})
			name := fmt.Sprintf("%s_%s_%s_%s", set.name, c.Version, goos, goarch)
			var archive []byte
			if goos == "windows" {
				name += ".zip"
				archive, err = zipArchive(files, c.Epoch)
			} else {
				name += ".tar.gz"
				archive, err = tarGz(files, c.Epoch)
			}
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(c.Out, name), archive, 0o644); err != nil {
				return err
			}
			sum := sha256.Sum256(archive)
			arts = append(arts, Artifact{Name: name, Binary: exe, Size: int64(len(archive)), BinLen: int64(len(data)), Sum: hex.EncodeToString(sum[:])})
			fmt.Fprintf(c.Log, "dist: %-52s %6.2f MiB  (%s %6.2f MiB, built in %.0fs)\n", name, mib(len(archive)), exe, mib(len(data)), time.Since(start).Seconds())
		}
	}
	deploy, err := DeployArchive(c.Root, c.Version, c.AgentImage, license, c.Epoch)
	if err != nil {
		return err
	}
	name := "podtrace-deploy_" + c.Version + ".tar.gz"
	if err := os.WriteFile(filepath.Join(c.Out, name), deploy, 0o644); err != nil {
		return err
	}
	dsum := sha256.Sum256(deploy)
	arts = append(arts, Artifact{Name: name, Size: int64(len(deploy)), Sum: hex.EncodeToString(dsum[:])})
	fmt.Fprintf(c.Log, "dist: %-52s %6.2f MiB  (deploy/ for %s)\n", name, mib(len(deploy)), c.Version)
	var sums bytes.Buffer
	bySum := map[string]string{}
	sort.Slice(arts, func(i, j int) bool { return arts[i].Name < arts[j].Name })
	for _, a := range arts {
		fmt.Fprintf(&sums, "%s  %s\n", a.Sum, a.Name)
		bySum[a.Name] = a.Sum
	}
	if err := os.WriteFile(filepath.Join(c.Out, "checksums.txt"), sums.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(c.Log, "dist: %s/checksums.txt\n", c.Out)
	if c.Manifest == "" {
		return nil
	}
	src, err := os.ReadFile(filepath.Join(c.Root, c.Manifest))
	if err != nil {
		return err
	}
	out, err := RenderManifest(src, c.Version, bySum, c.Partial)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Manifest, err)
	}
	if err := os.WriteFile(filepath.Join(c.Out, "krew-manifest.yaml"), out, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(c.Log, "dist: %s/krew-manifest.yaml (krew wants it named podtrace.yaml in an index)\n", c.Out)
	return nil
}

// DeployFiles are the files of deploy/ a cluster admin applies, in the
// order of the README's apply command, then the README.
var DeployFiles = []string{"agent-namespace.yaml", "user-rbac.yaml", "admission-policy.yaml", "README.md"}

var imagesRE = regexp.MustCompile(`(?m)^(  images: \|\n)((?:    .*\n)+)`)

// DeployArchive returns podtrace-deploy_VERSION.tar.gz: the directory
// podtrace-deploy_VERSION/ holding DeployFiles and LICENSE, with the
// admission policy's allowed images set to the agent image's repository (or
// to the image itself when it is pinned by digest).
func DeployArchive(root, version, agentImage string, license []byte, mtime time.Time) ([]byte, error) {
	allowed := ImageRepository(agentImage)
	if allowed == "" {
		return nil, fmt.Errorf("-agent-image %q is not an image reference", agentImage)
	}
	dir := "podtrace-deploy_" + version + "/"
	var files []entry
	for _, f := range DeployFiles {
		data, err := os.ReadFile(filepath.Join(root, "deploy", f))
		if err != nil {
			return nil, err
		}
		if f == "admission-policy.yaml" {
			if !imagesRE.Match(data) {
				return nil, errors.New("deploy/admission-policy.yaml: no \"  images: |\" block in the ConfigMap to set the agent image in")
			}
			data = imagesRE.ReplaceAllLiteral(data, []byte("  images: |\n    "+allowed+"\n"))
		}
		files = append(files, entry{dir + f, data, 0o644})
	}
	files = append(files, entry{dir + "LICENSE", license, 0o644})
	return tarGz(files, mtime)
}

// ImageRepository is what the admission policy admits for an image: the
// reference itself when pinned by digest, else its repository (the tag
// removed). "" when ref is not an image reference.
func ImageRepository(ref string) string {
	if strings.ContainsAny(ref, " \t\n") || ref == "" {
		return ""
	}
	if strings.Contains(ref, "@") {
		return ref
	}
	slash := strings.LastIndex(ref, "/")
	if i := strings.LastIndex(ref, ":"); i > slash {
		return ref[:i]
	}
	return ref
}

func mib(n int) float64 { return float64(n) / (1 << 20) }

type entry struct {
	name string
	data []byte
	mode int64
}

func tarGz(files []entry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, f := range files {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)),
			ModTime: mtime, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func zipArchive(files []entry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: mtime}
		h.SetMode(os.FileMode(f.mode))
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// RenderManifest returns the krew manifest src for version: spec.version
// set, each platform's uri moved to the version (its file name must be one
// of the archives) and its sha256 set to that archive's. With partial,
// platforms whose archive was not built are dropped; otherwise they are an
// error, and so is an archive of the plugin that no platform names.
// Comments and key order are kept.
func RenderManifest(src []byte, version string, sums map[string]string, partial bool) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("not a YAML document")
	}
	root := doc.Content[0]
	spec := get(root, "spec")
	ver := get(spec, "version")
	plats := get(spec, "platforms")
	if ver == nil || plats == nil || plats.Kind != yaml.SequenceNode {
		return nil, errors.New("want spec.version and a spec.platforms list")
	}
	old := ver.Value
	ver.Value = version
	used := map[string]bool{}
	var kept []*yaml.Node
	for i, p := range plats.Content {
		uri, sum := get(p, "uri"), get(p, "sha256")
		if uri == nil || sum == nil {
			return nil, fmt.Errorf("spec.platforms[%d]: want uri and sha256", i)
		}
		uri.Value = strings.ReplaceAll(uri.Value, old, version)
		name := path.Base(uri.Value)
		s, ok := sums[name]
		if !ok {
			if partial {
				continue
			}
			return nil, fmt.Errorf("spec.platforms[%d]: no archive %s was built", i, name)
		}
		sum.Value, sum.Tag, sum.Style = s, "!!str", 0
		used[name] = true
		kept = append(kept, p)
	}
	if len(kept) == 0 {
		return nil, errors.New("no platform of the manifest has an archive")
	}
	plats.Content = kept
	for name := range sums {
		if strings.HasPrefix(name, "kubectl-podtrace_") && !used[name] {
			return nil, fmt.Errorf("archive %s has no platform in the manifest", name)
		}
	}
	// The template's head comment says its checksums are placeholders.
	doc.HeadComment, root.HeadComment = "", ""
	if len(root.Content) > 0 {
		root.Content[0].HeadComment = ""
	}
	root.HeadComment = fmt.Sprintf("krew plugin manifest of kubectl-podtrace %s, rendered by make dist.", version)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// get returns the value of key in a mapping node, nil if absent.
func get(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
