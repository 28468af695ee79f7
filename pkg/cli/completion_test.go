package cli

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podtrace/kubectl-podtrace/pkg/version"
)

func testPod(ns, name string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Status: corev1.PodStatus{Phase: phase}}
}

func TestPodNameCompletion(t *testing.T) {
	client := fake.NewSimpleClientset(
		testPod("default", "web-1", corev1.PodRunning),
		testPod("default", "web-2", corev1.PodPending),
		testPod("default", "db-0", corev1.PodRunning),
		testPod("default", "job-x", corev1.PodSucceeded), // finished: nothing to trace
		testPod("shop", "frontend-7d9", corev1.PodRunning),
		testPod("shop", "api-0", corev1.PodRunning),
	)
	factory := func() (kubernetes.Interface, error) { return client, nil }
	for _, c := range []struct {
		name, ns   string // ns: the -n flag
		args       []string
		toComplete string
		want       []string
	}{
		{"all of the default namespace", "", nil, "", []string{"db-0", "web-1", "web-2"}},
		{"prefix", "", nil, "we", []string{"web-1", "web-2"}},
		{"-n", "shop", nil, "", []string{"api-0", "frontend-7d9"}},
		{"ns/ prefix", "", nil, "shop/", []string{"shop/api-0", "shop/frontend-7d9"}},
		{"ns/pod prefix, -n ignored", "default", nil, "shop/f", []string{"shop/frontend-7d9"}},
		{"DST after SRC", "", []string{"web-1"}, "d", []string{"db-0"}},
		{"nothing after DST", "", []string{"web-1", "db-0"}, "", nil},
		{"unknown namespace", "", nil, "nope/", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := genericclioptions.NewConfigFlags(false)
			f.KubeConfig = new(string)
			*f.KubeConfig = "/nonexistent/kubeconfig" // no context: "default"
			f.Namespace = &c.ns
			got, dir := PodNameCompletionWith(f, factory)(&cobra.Command{}, c.args, c.toComplete)
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("completions %q; want %q", got, c.want)
			}
			if dir != cobra.ShellCompDirectiveNoFileComp {
				t.Errorf("directive %d; want NoFileComp (pod names, never files)", dir)
			}
		})
	}
	// No cluster: no completions, no error printed.
	f := genericclioptions.NewConfigFlags(false)
	got, _ := PodNameCompletionWith(f, func() (kubernetes.Interface, error) { return nil, errors.New("no cluster") })(&cobra.Command{}, nil, "")
	if len(got) != 0 {
		t.Errorf("completions without a cluster: %q", got)
	}
}

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewCmdPodtrace(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "complete -o default -F __start_kubectl-podtrace kubectl-podtrace",
		"zsh":  "#compdef kubectl-podtrace",
		"fish": "complete -c kubectl-podtrace",
	} {
		out, _, err := runCLI(t, "completion", shell)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("completion %s: err %v, want %q in:\n%.300s", shell, err, want, out)
		}
		if strings.Contains(out, "__start_kubectl ") || strings.Contains(out, "#compdef kubectl\n") {
			t.Errorf("completion %s would replace kubectl's own completion", shell)
		}
	}
	// What kubectl_complete-podtrace asks: the plugin's own words.
	out, _, err := runCLI(t, "__complete", "l")
	if err != nil || !strings.Contains(out, "lab\t") || !strings.Contains(out, "local\t") {
		t.Errorf("__complete l: err %v\n%s", err, out)
	}
}

func TestVersion(t *testing.T) {
	defer func(v, c, i string) { version.Version, version.Commit, version.AgentImage = v, c, i }(version.Version, version.Commit, version.AgentImage)
	version.Version, version.Commit, version.AgentImage = "v1.2.3", "abc1234", "registry.example/podtrace-agent:v1.2.3"
	out, _, err := runCLI(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	want := "kubectl-podtrace v1.2.3\ncommit      abc1234\nagent image registry.example/podtrace-agent:v1.2.3\ngo          " + version.GoVersion() + "\n"
	if out != want {
		t.Errorf("version printed\n%s\nwant\n%s", out, want)
	}
	if _, _, err := runCLI(t, "version", "extra"); err == nil {
		t.Error("version accepted an argument")
	}
}

// The values of --proto, -o, --color, --mode, --dry-run and --topology
// complete through cobra's __complete (what the shell scripts and
// kubectl_complete-podtrace call), on every command that has the flag,
// with the values the documentation names; never file names.
func TestFlagValuesComplete(t *testing.T) {
	proto := []string{"icmp", "tcp", "udp"}
	output := []string{"text", "json"}
	color := []string{"auto", "always", "never"}
	for _, c := range []struct {
		args []string // before the flag
		flag string
		want []string
	}{
		{[]string{"pod-a", "pod-b"}, "--proto", proto},
		{[]string{"pod-a", "pod-b"}, "-o", output},
		{[]string{"pod-a", "pod-b"}, "--output", output},
		{[]string{"pod-a", "pod-b"}, "--color", color},
		{[]string{"pod-a", "pod-b"}, "--mode", []string{"auto", "ephemeral", "unprivileged", "node"}},
		{[]string{"pod-a", "pod-b"}, "--image-pull-policy", []string{"Always", "IfNotPresent", "Never"}},
		{nil, "--proto", proto}, // before SRC
		{[]string{"lab"}, "--proto", proto},
		{[]string{"lab"}, "-o", output},
		{[]string{"lab"}, "--color", color},
		{[]string{"lab"}, "--topology", []string{"bridge", "vxlan", "routed"}},
		{[]string{"local", "--from", "a"}, "--proto", proto},
		{[]string{"local"}, "-o", output},
		{[]string{"replay", "case-1"}, "-o", output},
		{[]string{"replay"}, "--color", color},
	} {
		name := strings.Join(append(append([]string{}, c.args...), c.flag), " ")
		t.Run(name, func(t *testing.T) {
			args := append(append([]string{"__complete"}, c.args...), c.flag, "")
			out, _, err := runCLI(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			got, directive := completions(out)
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("completes %q; want %q\n%s", got, c.want, out)
			}
			if directive != ":4" { // ShellCompDirectiveNoFileComp
				t.Errorf("directive %s; want :4 (no file names)", directive)
			}
			// A prefix narrows them.
			out, _, _ = runCLI(t, append(args[:len(args)-1], c.want[1][:1])...)
			var want []string
			for _, v := range c.want {
				if strings.HasPrefix(v, c.want[1][:1]) {
					want = append(want, v)
				}
			}
			if got, _ := completions(out); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("prefix %q completes %q; want %q", c.want[1][:1], got, want)
			}
		})
	}
	// --dry-run takes its value after "=" only (a bare --dry-run is the
	// server's).
	out, _, err := runCLI(t, "__complete", "pod-a", "pod-b", "--dry-run=")
	got, _ := completions(out)
	if err != nil || strings.Join(got, " ") != "server client none" {
		t.Errorf("--dry-run= completes %q (%v)", got, err)
	}
}

// completions splits __complete's output: the values (descriptions cut)
// and the directive line.
func completions(out string) ([]string, string) {
	var vals []string
	directive := ""
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, ":") {
			directive = l
			continue
		}
		v, _, _ := strings.Cut(l, "\t")
		vals = append(vals, v)
	}
	return vals, directive
}

// Every value --mode, --proto and --dry-run complete is one the command
// accepts (TestFlagMistakesAreReportedBeforeAnyAPICall refuses values
// beside them).
func TestCompletedValuesAreAccepted(t *testing.T) {
	for flag, extra := range map[string][]string{"--mode": {"--passive"}, "--proto": {"--port", "80"}, "--dry-run": nil} {
		out, _, err := runCLI(t, "__complete", "pod-a", "pod-b", flag, "")
		if flag == "--dry-run" {
			out, _, err = runCLI(t, "__complete", "pod-a", "pod-b", "--dry-run=")
		}
		if err != nil {
			t.Fatal(err)
		}
		vals, _ := completions(out)
		for _, v := range vals {
			v = strings.TrimPrefix(v, "--dry-run=")
			o := NewClusterOptions(TraceOptions{})
			cmd := &cobra.Command{}
			o.TraceOptions.AddFlags(cmd)
			o.AddFlags(cmd)
			args := append([]string{flag + "=" + v}, extra...)
			if (flag == "--proto" && v == "icmp") || (flag == "--mode" && v != "node") {
				args = args[:1] // only node needs --passive; unprivileged refuses it
			}
			if err := cmd.ParseFlags(args); err != nil {
				t.Fatal(err)
			}
			if err := o.ValidateArgs([]string{"pod-a", "pod-b"}); err != nil {
				t.Errorf("%s=%s completes but is refused: %v", flag, v, err)
			}
		}
	}
}

// --help lists the command's own flags first and kubectl's connection
// flags in a section of their own (every one of them, and nothing else);
// --save and --pcap show a path as their placeholder.
func TestHelpGroupsKubernetesFlagsApart(t *testing.T) {
	kube := pflag.NewFlagSet("kubectl", pflag.ContinueOnError)
	genericclioptions.NewConfigFlags(true).AddFlags(kube)
	for _, c := range []struct {
		args []string
		own  []string // some of the command's own flags
		kube bool
	}{
		{[]string{"--help"}, []string{"--proto string", "--pcap FILE", "--save DIR", "--dry-run", "--mode"}, true},
		{[]string{"cleanup", "--help"}, []string{"--session", "--all-namespaces"}, true},
		{[]string{"lab", "--help"}, []string{"--topology", "--pcap FILE", "--save DIR"}, false},
		{[]string{"replay", "--help"}, []string{"--pcap FILE", "--output"}, false},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			out, _, err := runCLI(t, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			own, kubeSec, found := strings.Cut(out, "\nKubernetes connection flags (as kubectl's):\n")
			if found != c.kube {
				t.Fatalf("Kubernetes section present: %v; want %v\n%s", found, c.kube, out)
			}
			_, own, ok := strings.Cut(own, "\nFlags:\n")
			if !ok {
				t.Fatalf("no Flags: section\n%s", out)
			}
			for _, f := range c.own {
				if !strings.Contains(own, f) {
					t.Errorf("the command's own flags lack %q:\n%s", f, own)
				}
			}
			kube.VisitAll(func(f *pflag.Flag) {
				in := regexp.MustCompile(`(?m)^\s+(-\w, )?--` + regexp.QuoteMeta(f.Name) + `\b`)
				if in.MatchString(own) {
					t.Errorf("--%s is among the command's own flags", f.Name)
				}
				if c.kube && !in.MatchString(kubeSec) {
					t.Errorf("--%s is not in the Kubernetes section", f.Name)
				}
			})
			if c.kube {
				for _, l := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([\w-]+)`).FindAllStringSubmatch(kubeSec, -1) {
					if kube.Lookup(l[1]) == nil {
						t.Errorf("--%s is in the Kubernetes section but is not a kubectl flag", l[1])
					}
				}
			}
		})
	}
}
