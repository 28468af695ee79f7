package cli

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Flags in --help come in sections: the command's own flags first (every
// flag nobody put in a group), then each group in the order of
// flagGroups. A flag joins a group by its annotation (setFlagGroup).
const flagGroupAnnotation = "podtrace.io/flag-group"

// KubeFlagsGroup holds kubectl's connection flags (--kubeconfig,
// --context, --server, --as, --token, …), the same on every command that
// talks to a cluster.
const KubeFlagsGroup = "Kubernetes connection flags (as kubectl's)"

// flagGroups orders the sections after the command's own flags.
var flagGroups = []string{KubeFlagsGroup}

// helpWidth is where flag help wraps.
const helpWidth = 100

// setFlagGroup puts the named flags of fs in group.
func setFlagGroup(fs *pflag.FlagSet, group string, names ...string) {
	for _, n := range names {
		_ = fs.SetAnnotation(n, flagGroupAnnotation, []string{group})
	}
}

// addKubeFlags registers kubectl's connection flags on cmd, in their
// section of --help.
func addKubeFlags(cmd *cobra.Command, cf *genericclioptions.ConfigFlags) {
	fs := pflag.NewFlagSet("kubernetes", pflag.ContinueOnError)
	cf.AddFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) { setFlagGroup(fs, KubeFlagsGroup, f.Name) })
	cmd.Flags().AddFlagSet(fs)
}

// flagSections renders a command's local flags by section.
func flagSections(c *cobra.Command) string {
	sets := map[string]*pflag.FlagSet{}
	set := func(g string) *pflag.FlagSet {
		if sets[g] == nil {
			sets[g] = pflag.NewFlagSet(g, pflag.ContinueOnError)
		}
		return sets[g]
	}
	c.LocalFlags().VisitAll(func(f *pflag.Flag) {
		g := ""
		if v := f.Annotations[flagGroupAnnotation]; len(v) == 1 {
			g = v[0]
		}
		set(g).AddFlag(f)
	})
	var b strings.Builder
	for _, g := range append([]string{""}, flagGroups...) {
		fs := sets[g]
		if fs == nil || !fs.HasAvailableFlags() {
			continue
		}
		title := g
		if g == "" {
			title = "Flags"
		}
		b.WriteString("\n\n" + title + ":\n")
		b.WriteString(strings.TrimRight(fs.FlagUsagesWrapped(helpWidth), " \n"))
	}
	return b.String()
}

func init() {
	cobra.AddTemplateFunc("podtraceFlagSections", flagSections)
}

// useFlagSections makes cmd's usage (--help and errors) show its flags by
// section. The template is cobra's own with its one "Flags:" block
// replaced.
func useFlagSections(cmd *cobra.Command) {
	const block = `{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}`
	t := cmd.UsageTemplate()
	if !strings.Contains(t, block) {
		return // cobra's template changed: one list (TestHelpGroupsKubernetesFlagsApart fails)
	}
	cmd.SetUsageTemplate(strings.Replace(t, block, `{{if .HasAvailableLocalFlags}}{{podtraceFlagSections .}}{{end}}`, 1))
}

// completeValues completes a flag with fixed values ("value\tdescription"),
// those that start with what was typed.
func completeValues(cmd *cobra.Command, flag string, values ...string) {
	_ = cmd.RegisterFlagCompletionFunc(flag, func(_ *cobra.Command, _ []string, typed string) ([]string, cobra.ShellCompDirective) {
		var out []string
		for _, v := range values {
			if strings.HasPrefix(v, typed) {
				out = append(out, v)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
}
