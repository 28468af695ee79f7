//go:build !linux

package cli

import (
	"errors"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// The lab and local commands create and enter Linux network namespaces on
// this machine; elsewhere (the plugin on macOS or Windows traces a cluster)
// they only say so.

// NewCmdLab is `kubectl podtrace lab` where it cannot run.
func NewCmdLab(genericiooptions.IOStreams) *cobra.Command {
	return linuxOnly("lab", "Build a throw-away node from network namespaces and trace across it (Linux, root)")
}

// NewCmdLocal is `kubectl podtrace local` where it cannot run.
func NewCmdLocal(genericiooptions.IOStreams) *cobra.Command {
	return linuxOnly("local", "Trace between two network namespaces of this host (Linux, root)")
}

func linuxOnly(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short,
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("`kubectl podtrace " + use + "` uses Linux network namespaces of this machine: run it on Linux, as root; tracing between pods of a cluster works from here")
		},
	}
}
