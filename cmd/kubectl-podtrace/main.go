// Command kubectl-podtrace is the kubectl plugin: `kubectl podtrace …`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/klog/v2"

	"github.com/podtrace/kubectl-podtrace/pkg/cli"
)

func main() {
	os.Exit(run())
}

func run() int {
	// client-go reports some stream errors through klog as well as to us;
	// every error the user needs is returned and printed once, in words.
	klog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	cmd := cli.NewCmdPodtrace(streams)
	if err := cmd.ExecuteContext(ctx); err != nil {
		var ec *cli.ExitCodeError
		if errors.As(err, &ec) {
			return ec.Code
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		return cli.ExitError
	}
	return 0
}
