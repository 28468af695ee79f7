// Package cli holds the kubectl-podtrace commands: flags become typed
// options (Complete → Validate → Run), and the engine never sees flags.
package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	// The auth providers kubectl has: OIDC, and for the retired Azure and
	// GCP providers the error that points to their exec plugins. Exec
	// credential plugins are client-go's own.
	_ "k8s.io/client-go/plugin/pkg/client/auth"

	"github.com/podtrace/kubectl-podtrace/pkg/version"
)

// NewCmdPodtrace is the root command.
func NewCmdPodtrace(streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kubectl-podtrace",
		Short: "Trace a packet hop by hop between two pods",
		Long: `kubectl podtrace shows, hop by hop, what happens to a packet between two pods:
pod eth0 → host veth → bridge (ARP who-has / is-at, FDB) → peer veth → pod eth0,
how long each hop took, and where it died when it did.`,
		Example: `  # No cluster needed: a throw-away node built from network namespaces (root)
  kubectl podtrace lab

  # Between two network namespaces of this host (root)
  kubectl podtrace local --from ns-a --to ns-b --proto tcp --port 8080`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
	}
	o := NewClusterOptions(TraceOptions{IOStreams: streams})
	// The binary is kubectl-podtrace; users type "kubectl podtrace".
	cmd.Use = "kubectl-podtrace SRC DST [flags]"
	cmd.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl podtrace"}
	cmd.Example = `  # ICMP echo from pod-a to pod-b (both in the current namespace), hop by hop
  kubectl podtrace pod-a pod-b

  # TCP SYN to port 8080, three probes, pods in two namespaces
  kubectl podtrace shop/frontend payments/api --proto tcp --port 8080 --count 3

  # Observe existing traffic for 30 s instead of probing
  kubectl podtrace pod-a pod-b --passive --duration 30s --filter 'tcp port 80'

  # Machine-readable events, and every frame for Wireshark
  kubectl podtrace pod-a pod-b -o json | jq -c 'select(.kind=="verdict")'
  kubectl podtrace pod-a pod-b --pcap trace.pcapng

  # To a Service: through kube-proxy's DNAT to the endpoint it chose (TCP or UDP, the port's protocol)
  kubectl podtrace pod-a svc/web
  kubectl podtrace pod-a shop/svc/api:8443

  # What would be created, without creating it
  kubectl podtrace pod-a pod-b --dry-run

  # Air-gapped: the agent image from your mirror
  kubectl podtrace pod-a pod-b --image registry.example.com/podtrace-agent:v0.1.0 --image-pull-secret mirror

` + cmd.Example
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return c.Help()
		}
		o.protoSet, o.portSet = c.Flags().Changed("proto"), c.Flags().Changed("port")
		o.startTimeline()
		defer o.printTiming()
		// Every check of the arguments and flags first: a typo is
		// reported as such, before any API call.
		if err := o.ValidateArgs(args); err != nil {
			return err
		}
		if err := o.Complete(c.Context(), args); err != nil {
			return err
		}
		o.timeline.Mark("", "pods, Service and nodes resolved")
		return o.Run(c.Context())
	}
	o.TraceOptions.AddFlags(cmd)
	o.AddFlags(cmd)
	cmd.ValidArgsFunction = PodNameCompletion(o.ConfigFlags)
	useFlagSections(cmd)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	cmd.AddCommand(NewCmdLab(streams), NewCmdLocal(streams), NewCmdVersion(streams), NewCmdCleanup(streams), NewCmdCompletion(streams), NewCmdReplay(streams))
	return cmd
}

// NewCmdVersion prints build information.
func NewCmdVersion(streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin version, commit, default agent image and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(streams.Out, "kubectl-podtrace %s\ncommit      %s\nagent image %s\ngo          %s\n",
				version.Version, version.Commit, version.AgentImage, version.GoVersion())
			return nil
		},
	}
}
