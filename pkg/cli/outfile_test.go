package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	k8stesting "k8s.io/client-go/testing"
)

// An output path that cannot be written is found before anything is
// created in the cluster — when the flags are validated, and again before
// the first agent starts: the trace fails with one line naming the path,
// and the API server saw only the preflight's dry runs — no ephemeral
// container added to a pod, no node pod created. A --save directory made
// for the run is removed again.
func TestUnwritableOutputCreatesNothingInTheCluster(t *testing.T) {
	root := t.TempDir()
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link.pcapng")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	dirLink := filepath.Join(root, "rec-link")
	if err := os.Symlink(root, dirLink); err != nil {
		t.Fatal(err)
	}
	newSave := filepath.Join(root, "new-recording")
	for _, c := range []struct {
		name       string
		pcap, save string
		want       string // in the error
	}{
		{"pcap is a symbolic link", link, "", link + " is a symbolic link"},
		{"pcap in a file", filepath.Join(victim, "trace.pcapng"), "", filepath.Join(victim, "trace.pcapng") + ": not a directory"},
		{"save is a symbolic link", "", dirLink, dirLink + " is a symbolic link"},
		{"save made, then pcap refused", link, newSave, link + " is a symbolic link"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cs, writes := fakeCluster(runningPod("default", "pod-a", "10.244.0.2", "node-1"), runningPod("default", "pod-b", "10.244.0.3", "node-1"))
			var out, errOut bytes.Buffer
			o := clusterOptions(cs, "icmp", &out, &errOut)
			o.Pcap, o.Save = c.pcap, c.save
			ctx := context.Background()
			if err := o.Complete(ctx, []string{"pod-a", "pod-b"}); err != nil {
				t.Fatal(err)
			}
			// Validate finds it, creating nothing.
			if err := o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("validate: %v; want one line with %q", err, c.want)
			}
			// And the run, as if the link appeared after validation,
			// before it starts any agent.
			err := o.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("run: %v; want one line with %q", err, c.want)
			}
			teardown := func(a k8stesting.Action) bool { return a.GetVerb() == "delete" } // the fake keeps what a dry run created
			for _, w := range notDryRuns(slices.DeleteFunc(slices.Clone(*writes), teardown)) {
				t.Errorf("%s was not a dry run: the cluster was changed for a trace that could not be saved", w)
			}
			if b, _ := os.ReadFile(victim); string(b) != "keep" {
				t.Errorf("the link's target was written: %q", b)
			}
			if _, err := os.Lstat(newSave); err == nil {
				t.Errorf("the --save directory made for the failed run is still there")
			}
		})
	}
}
