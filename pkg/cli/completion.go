package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
)

// CompletionFunc is what cobra calls to complete a positional argument.
type CompletionFunc func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective)

// ClientsetFunc makes the client completion lists pods with.
type ClientsetFunc func() (kubernetes.Interface, error)

// PodNameCompletion completes the SRC and DST pod arguments with the names of
// the running pods of the namespace given by -n (or the kubeconfig context's),
// or, when the word typed so far has a slash, of the namespace before it, as
// "ns/pod". Errors (no cluster, no permission) complete nothing rather than
// print anything.
func PodNameCompletion(f *genericclioptions.ConfigFlags) func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return PodNameCompletionWith(f, func() (kubernetes.Interface, error) {
		cfg, err := f.ToRESTConfig()
		if err != nil {
			return nil, err
		}
		cfg.Timeout = 5 * time.Second
		return kubernetes.NewForConfig(cfg)
	})
}

// PodNameCompletionWith is PodNameCompletion with the clientset made by
// newClient (tests use a fake one).
func PodNameCompletionWith(f *genericclioptions.ConfigFlags, newClient ClientsetFunc) CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) >= 2 { // SRC and DST are there
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns, prefix, qualified := "", toComplete, false
		if before, after, ok := strings.Cut(toComplete, "/"); ok {
			ns, prefix, qualified = before, after, true
		}
		if ns == "" {
			ns = completionNamespace(f)
		}
		c, err := newClient()
		if err != nil {
			cobra.CompDebugln("podtrace: "+err.Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx := context.Background()
		if cmd != nil && cmd.Context() != nil {
			ctx = cmd.Context()
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			cobra.CompDebugln(fmt.Sprintf("podtrace: list pods in %s: %v", ns, err), true)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || !strings.HasPrefix(p.Name, prefix) {
				continue
			}
			if qualified {
				out = append(out, ns+"/"+p.Name)
			} else {
				out = append(out, p.Name)
			}
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completionNamespace is -n, else the kubeconfig context's namespace, else
// "default".
func completionNamespace(f *genericclioptions.ConfigFlags) string {
	if f.Namespace != nil && *f.Namespace != "" {
		return *f.Namespace
	}
	if ns, _, err := f.ToRawKubeConfigLoader().Namespace(); err == nil && ns != "" {
		return ns
	}
	return "default"
}

// NewCmdCompletion is `kubectl podtrace completion bash|zsh|fish|powershell`.
func NewCmdCompletion(streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script for kubectl-podtrace",
		Long: `Print a shell completion script for the kubectl-podtrace command.

For "kubectl podtrace <TAB>", kubectl (1.26 and later) completes the plugin's
arguments itself when kubectl's own completion is loaded and the helper
kubectl_complete-podtrace (shipped in the release archives) is on PATH:

  install -m 0755 kubectl_complete-podtrace /usr/local/bin/     # next to kubectl-podtrace
  source <(kubectl completion bash)

For "kubectl-podtrace <TAB>" (the plugin binary called directly), load this script:

  source <(kubectl podtrace completion bash)                      # bash, in ~/.bashrc
  kubectl podtrace completion zsh > "${fpath[1]}/_kubectl-podtrace"  # zsh
  kubectl podtrace completion fish | source                       # fish`,
		Args:                  cobra.ExactArgs(1),
		ValidArgs:             []string{"bash", "zsh", "fish", "powershell"},
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), streams.Out
			// The scripts complete the command named by the root's first
			// word: it must be the binary, never "kubectl" (that would
			// replace kubectl's own completion).
			if use := root.Use; root.Name() != "kubectl-podtrace" {
				root.Use = "kubectl-podtrace"
				defer func() { root.Use = use }()
			}
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return fmt.Errorf("completion %q: want bash, zsh, fish or powershell", args[0])
		},
	}
}
