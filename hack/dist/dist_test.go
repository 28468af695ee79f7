package main

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// krewVersion is the krew release whose own tools validate and install the
// manifest.
const krewVersion = "v0.4.3"

func TestRenderManifest(t *testing.T) {
	src, err := os.ReadFile("../../krew-manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, p := range []string{"linux_amd64.tar.gz", "linux_arm64.tar.gz", "darwin_amd64.tar.gz", "darwin_arm64.tar.gz", "windows_amd64.zip"} {
		sums["kubectl-podtrace_v1.2.3_"+p] = fmt.Sprintf("%064x", len(sums)+1)
	}
	sums["podtrace-agent_v1.2.3_linux_amd64.tar.gz"] = fmt.Sprintf("%064x", 99)
	out, err := RenderManifest(src, "v1.2.3", sums, false)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Spec struct {
			Version   string
			Platforms []struct{ URI, Sha256 string }
		}
	}
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m.Spec.Version != "v1.2.3" || len(m.Spec.Platforms) != 5 {
		t.Fatalf("rendered version %q with %d platforms:\n%s", m.Spec.Version, len(m.Spec.Platforms), out)
	}
	for _, p := range m.Spec.Platforms {
		if !strings.Contains(p.URI, "/download/v1.2.3/kubectl-podtrace_v1.2.3_") || p.Sha256 != sums[filepath.Base(p.URI)] {
			t.Errorf("platform %s sha256 %s; want the v1.2.3 archive's checksum", p.URI, p.Sha256)
		}
	}
	if strings.Contains(string(out), "placeholder") || !strings.Contains(string(out), "caveats:") {
		t.Errorf("rendered manifest:\n%s", out)
	}
	// A platform without an archive is an error, unless partial.
	delete(sums, "kubectl-podtrace_v1.2.3_darwin_arm64.tar.gz")
	if _, err := RenderManifest(src, "v1.2.3", sums, false); err == nil || !strings.Contains(err.Error(), "darwin_arm64") {
		t.Errorf("missing archive: err %v", err)
	}
	if out, err = RenderManifest(src, "v1.2.3", sums, true); err != nil || strings.Contains(string(out), "darwin_arm64") {
		t.Errorf("partial: err %v\n%s", err, out)
	}
	// An archive no platform names is an error.
	sums["kubectl-podtrace_v1.2.3_freebsd_amd64.tar.gz"] = sums["podtrace-agent_v1.2.3_linux_amd64.tar.gz"]
	if _, err := RenderManifest(src, "v1.2.3", sums, true); err == nil || !strings.Contains(err.Error(), "freebsd") {
		t.Errorf("archive without platform: err %v", err)
	}
}

// need returns the path of a tool the test cannot do without: a missing one
// fails the test with what to install.
func need(t *testing.T, tool, hint string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s is needed on PATH (%s): %v", tool, hint, err)
	}
	return p
}

func run(t *testing.T, env []string, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env, cmd.Dir = env, dir
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %s (%.1fs)\n%s", filepath.Base(name), strings.Join(args, " "), time.Since(start).Seconds(), out)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// TestKrewManifestValidatesAndInstallsOffline builds the linux/amd64 release
// archive and manifest exactly as make dist does, validates the manifest with
// krew's validate-krew-manifest, installs the archive with krew into a
// temporary KREW_ROOT (no network, no ~/.krew), and runs the installed plugin
// through kubectl: `kubectl podtrace version`, `kubectl podtrace lab` as
// root with the agent krew installed beside the plugin (none on PATH), and
// argument completion through the shipped kubectl_complete-podtrace helper.
func TestKrewManifestValidatesAndInstallsOffline(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("installs the linux/amd64 archive; this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	gobin := need(t, "go", "Go 1.26")
	kubectl := need(t, "kubectl", "https://kubernetes.io/docs/tasks/tools/ or apt-get install kubectl")
	tmp := t.TempDir()
	const version = "v0.9.1-test.1"
	// as make release records it: the tag and the image index's digest
	const image = "registry.example/podtrace/podtrace-agent:v0.9.1-test.1@sha256:0b4d8e1c2b6f3a9e5d7c1f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c"

	// 1. The archive, checksums and manifest, as make dist makes them.
	dist := filepath.Join(tmp, "dist")
	var log strings.Builder
	err := Run(Config{Out: dist, Version: version, Commit: "c0ffee1", AgentImage: image,
		Plugin: []string{"linux/amd64"}, Manifest: "krew-manifest.yaml", Partial: true,
		Epoch: time.Unix(1700000000, 0), Root: "../..", Log: &log})
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dist, "kubectl-podtrace_"+version+"_linux_amd64.tar.gz")
	if got := tarNames(t, archive); strings.Join(got, " ") != "LICENSE kubectl-podtrace kubectl_complete-podtrace podtrace-agent" {
		t.Errorf("archive holds %v; want the plugin, its completion helper, the agent and LICENSE", got)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(dist, "krew-manifest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sum, _, _ := strings.Cut(string(sums), "  ")
	if !strings.Contains(string(manifest), "sha256: "+sum) || !strings.Contains(string(manifest), "version: "+version) {
		t.Fatalf("manifest does not carry the archive's checksum %s from checksums.txt:\n%s\n%s", sum, sums, manifest)
	}

	// 2. krew's own tools, at a fixed version, built from the Go module proxy
	// (or the module cache): not dependencies of this module.
	tools := filepath.Join(tmp, "tools")
	goEnv := append(os.Environ(), "GOBIN="+tools, "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	run(t, goEnv, tmp, gobin, "install", "sigs.k8s.io/krew/cmd/krew@"+krewVersion, "sigs.k8s.io/krew/cmd/validate-krew-manifest@"+krewVersion)

	// 3. Validation: krew wants the file named after the plugin. The
	// top-level template is checked too (its checksums are placeholders).
	for name, body := range map[string][]byte{"rendered": manifest, "template": mustRead(t, "../../krew-manifest.yaml")} {
		dir := filepath.Join(tmp, "validate-"+name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "podtrace.yaml")
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
		out := run(t, os.Environ(), dir, filepath.Join(tools, "validate-krew-manifest"), "-manifest", p, "-skip-install")
		if !strings.Contains(out, "structural validation OK") {
			t.Errorf("%s manifest: validate-krew-manifest said\n%s", name, out)
		}
	}
	podtraceYAML := filepath.Join(tmp, "validate-rendered", "podtrace.yaml")

	// 4. Install from the local manifest and archive into a throw-away
	// KREW_ROOT and HOME; kubectl finds the plugin on PATH=$KREW_ROOT/bin.
	krewRoot, home := filepath.Join(tmp, "krew"), filepath.Join(tmp, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"HOME=" + home, "KREW_ROOT=" + krewRoot, "KREW_OS=linux", "KREW_ARCH=amd64", "KREW_NO_UPGRADE_CHECK=1",
		"PATH=" + filepath.Join(krewRoot, "bin") + ":" + filepath.Dir(kubectl) + ":/usr/bin:/bin",
		"KUBECONFIG=" + filepath.Join(home, "no-kubeconfig"),
	}
	out := run(t, env, tmp, filepath.Join(tools, "krew"), "install", "--manifest", podtraceYAML, "--archive", archive)
	if !strings.Contains(out, `Installed plugin: podtrace`) {
		t.Errorf("krew install said:\n%s", out)
	}
	store := filepath.Join(krewRoot, "store", "podtrace", version)
	for _, f := range []string{"kubectl-podtrace", "kubectl_complete-podtrace", "podtrace-agent", "LICENSE"} {
		if _, err := os.Stat(filepath.Join(store, f)); err != nil {
			t.Errorf("krew did not install %s: %v", f, err)
		}
	}
	// (krew list needs a git clone of an index: the receipt says the same.)
	if receipt, err := os.ReadFile(filepath.Join(krewRoot, "receipts", "podtrace.yaml")); err != nil || !strings.Contains(string(receipt), "version: "+version) {
		t.Errorf("krew receipt: %v\n%s", err, receipt)
	}

	// 5. The installed plugin, through real kubectl.
	out = run(t, env, tmp, kubectl, "podtrace", "version")
	for _, want := range []string{"kubectl-podtrace " + version + "\n", "commit      c0ffee1\n", "agent image " + image + "\n", "go          go1."} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl podtrace version: want %q in\n%s", want, out)
		}
	}
	// The lab, as root, finds the agent krew installed beside the plugin:
	// kubectl runs the link in $KREW_ROOT/bin, and no agent is on PATH.
	if os.Geteuid() != 0 {
		t.Fatal("the lab of the installed plugin needs root: run the test as root")
	}
	path := strings.TrimPrefix(env[slices.IndexFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") })], "PATH=")
	for _, dir := range filepath.SplitList(path) {
		if _, err := os.Stat(filepath.Join(dir, "podtrace-agent")); err == nil {
			t.Fatalf("an agent is on the test's PATH (%s): it would not prove that the plugin finds its own", dir)
		}
	}
	if fi, err := os.Lstat(filepath.Join(krewRoot, "bin", "kubectl-podtrace")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("krew did not link the plugin into its bin directory: %v", err)
	}
	out = run(t, env, tmp, kubectl, "podtrace", "lab", "--color", "never")
	if !strings.Contains(out, "verdict DELIVERED") {
		t.Errorf("kubectl podtrace lab of the installed plugin:\n%s", out)
	}
	out = run(t, env, tmp, kubectl, "plugin", "list")
	if !strings.Contains(out, filepath.Join(krewRoot, "bin", "kubectl-podtrace")) {
		t.Errorf("kubectl plugin list:\n%s", out)
	}

	// 6. Completion through kubectl: without the helper kubectl knows only
	// the plugin's name; with it copied next to the plugin (README), kubectl
	// completes the plugin's own arguments.
	out = run(t, env, tmp, kubectl, "__complete", "podtrace", "l")
	if strings.Contains(out, "lab") {
		t.Errorf("completion without the helper already knows lab:\n%s", out)
	}
	helper, err := os.ReadFile(filepath.Join(store, "kubectl_complete-podtrace"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(krewRoot, "bin", "kubectl_complete-podtrace"), helper, 0o755); err != nil {
		t.Fatal(err)
	}
	out = run(t, env, tmp, kubectl, "__complete", "podtrace", "l")
	if !strings.Contains(out, "lab") || !strings.Contains(out, "local") {
		t.Errorf("kubectl __complete podtrace l: want lab and local\n%s", out)
	}
	out = run(t, env, tmp, kubectl, "__complete", "podtrace", "completion", "")
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if !strings.Contains(out, sh) {
			t.Errorf("kubectl __complete podtrace completion: want %s\n%s", sh, out)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tarNames(t *testing.T, p string) []string {
	t.Helper()
	names, _ := readTarGz(t, p)
	return names
}

// readTarGz reads a .tar.gz archive once: its entries' names, sorted (a
// name twice is listed twice), and the contents of its regular files.
func readTarGz(t *testing.T, p string) ([]string, map[string][]byte) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	sort.Strings(names)
	return names, files
}

// The release carries deploy/ for its version: the admin's files in one
// archive (listed in checksums.txt), the admission policy admitting the
// release's agent image repository and nothing else.
func TestDeployArchiveAdmitsTheReleaseImage(t *testing.T) {
	dist := filepath.Join(t.TempDir(), "dist")
	const version = "v1.2.3"
	var log strings.Builder
	err := Run(Config{Out: dist, Version: version, Commit: "c0ffee1", AgentImage: "registry.example:5000/podtrace/podtrace-agent:v1.2.3",
		Epoch: time.Unix(1700000000, 0), Root: "../..", Log: &log})
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	name := "podtrace-deploy_" + version + ".tar.gz"
	got, files := readTarGz(t, filepath.Join(dist, name))
	dir := "podtrace-deploy_" + version + "/"
	want := []string{"LICENSE", "README.md", "admission-policy.yaml", "agent-namespace.yaml", "user-rbac.yaml"}
	for i := range want {
		want[i] = "podtrace-deploy_" + version + "/" + want[i]
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("archive holds %v; want %v", got, want)
	}
	if sums := string(mustRead(t, filepath.Join(dist, "checksums.txt"))); !strings.Contains(sums, "  "+name+"\n") {
		t.Errorf("checksums.txt lacks %s:\n%s", name, sums)
	}
	policy, ok := files[dir+"admission-policy.yaml"]
	if !ok {
		t.Fatalf("%s holds no %sadmission-policy.yaml", name, dir)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(policy)))
	var kinds []string
	for {
		var doc struct {
			Kind     string
			Metadata struct{ Name string }
			Data     map[string]string
		}
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("admission-policy.yaml: %v", err)
		}
		kinds = append(kinds, doc.Kind+"/"+doc.Metadata.Name)
		if doc.Kind == "ConfigMap" && doc.Data["images"] != "registry.example:5000/podtrace/podtrace-agent\n" {
			t.Errorf("ConfigMap %s admits %q; want the release's repository registry.example:5000/podtrace/podtrace-agent", doc.Metadata.Name, doc.Data["images"])
		}
	}
	if strings.Join(kinds, " ") != "ConfigMap/podtrace-agent-policy ValidatingAdmissionPolicy/podtrace-agent-namespace ValidatingAdmissionPolicyBinding/podtrace-agent-namespace ValidatingAdmissionPolicy/podtrace-agent-ephemeral ValidatingAdmissionPolicyBinding/podtrace-agent-ephemeral ValidatingAdmissionPolicy/podtrace-agent-attach ValidatingAdmissionPolicyBinding/podtrace-agent-attach" {
		t.Errorf("admission-policy.yaml holds %v", kinds)
	}
	// The other files are deploy/'s, unchanged.
	for _, f := range []string{"agent-namespace.yaml", "user-rbac.yaml", "README.md"} {
		if b, ok := files[dir+f]; !ok || string(b) != string(mustRead(t, "../../deploy/"+f)) {
			t.Errorf("%s differs from deploy/%s", f, f)
		}
	}
}

// Repository and digest per the OCI distribution reference grammar: a port
// in the registry is not a tag; a digest pins the image itself.
func TestImageRepository(t *testing.T) {
	const dig = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for in, want := range map[string]string{
		"ghcr.io/podtrace/podtrace-agent:v0.1.0":    "ghcr.io/podtrace/podtrace-agent",
		"ghcr.io/podtrace/podtrace-agent":           "ghcr.io/podtrace/podtrace-agent",
		"registry.example:5000/podtrace-agent":      "registry.example:5000/podtrace-agent",
		"registry.example:5000/podtrace-agent:v1":   "registry.example:5000/podtrace-agent",
		"ghcr.io/podtrace/podtrace-agent@" + dig:    "ghcr.io/podtrace/podtrace-agent@" + dig,
		"ghcr.io/podtrace/podtrace-agent:v1@" + dig: "ghcr.io/podtrace/podtrace-agent:v1@" + dig,
		"":           "",
		"bad ref:v1": "",
	} {
		if got := ImageRepository(in); got != want {
			t.Errorf("ImageRepository(%q) = %q; want %q", in, got, want)
		}
	}
}
