package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
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
