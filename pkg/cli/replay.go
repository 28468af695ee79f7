package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/podtrace/kubectl-podtrace/pkg/outfile"
	"github.com/podtrace/kubectl-podtrace/pkg/render"
	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
)

// NewCmdReplay is `kubectl podtrace replay DIR`.
func NewCmdReplay(streams genericiooptions.IOStreams) *cobra.Command {
	o := &TraceOptions{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "replay DIR",
		Short: "Show a trace again from the observation streams a run saved with --save",
		Long: `Show a trace again from a recording: the raw observation streams of every agent
that a run saved with --save DIR. No cluster, no root: the same merge and rendering
run on the saved streams, in any output format (text, -o json, --pcap).`,
		Example: `  kubectl podtrace pod-a pod-b --save case-4711     # on the cluster
  kubectl podtrace replay case-4711                  # anywhere, later
  kubectl podtrace replay case-4711 --pcap case-4711.pcapng -o json
  kubectl podtrace replay case-4711 --explain        # what happened, in plain words`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validateOutput(); err != nil {
				return err
			}
			if o.Pcap != "" {
				if err := outfile.Check(o.Pcap); err != nil {
					return fmt.Errorf("--pcap: %w", err)
				}
			}
			s, streams, armed, notes, err := session.Load(args[0])
			if err != nil {
				return err
			}
			return o.Show(merge.Merge(s, streams), render.Header{Armed: armed, Notes: notes})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	f.StringVar(&o.Color, "color", "auto", "color the text output: auto, always or never")
	f.StringVar(&o.Pcap, "pcap", "", "also write every frame to the pcapng file `FILE`")
	o.addOutputCompletions(cmd)
	addExplainFlag(cmd, &o.Explain)
	return cmd
}
