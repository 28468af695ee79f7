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
	"github.com/podtrace/kubectl-podtrace/pkg/render"
)

func main() {
	os.Exit(run())
}

func run() int {
	// client-go reports some stream errors through klog as well as to us;
	// every error the user needs is returned and printed once, in words.
	klog.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	interrupts(cancel)
	// Everything written to standard error (progress, kubelet and agent
	// messages, errors) may carry text from the cluster or an agent: it
	// goes out through the terminal escaper.
	stderr := render.NewSafeWriter(os.Stderr)
	defer stderr.Flush()
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: stderr}
	cmd := cli.NewCmdPodtrace(streams)
	if err := cmd.ExecuteContext(ctx); err != nil {
		var ec *cli.ExitCodeError
		if errors.As(err, &ec) {
			return ec.Code
		}
		fmt.Fprintln(stderr, "error:", err)
		return cli.ExitError
	}
	return 0
}

// interrupts turns the first SIGINT, SIGTERM or SIGHUP into a cancelled
// context: the command stops its run and cleans up after it (removes what
// it created; agents kept warm by --linger stay, and it says so). A
// second one exits at once, saying what may be left and how to remove it.
func interrupts(cancel context.CancelFunc) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-sigs
		cancel()
		fmt.Fprintln(os.Stderr, "podtrace: interrupted: stopping the run and cleaning up after it (interrupt again to exit at once)")
		<-sigs
		// (the standard error writer may be mid-line: this line goes out on its own, escaped)
		fmt.Fprintln(os.Stderr, "podtrace: interrupted again: exiting before the teardown ended; "+render.Safe(cli.Leftover()))
		os.Exit(130)
	}()
}
