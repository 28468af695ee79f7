//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestPluginOnPath checks that kubectl finds the plugin the way it finds a user's:
// kubectl-podtrace on PATH, run as "kubectl podtrace".
func TestPluginOnPath(t *testing.T) {
	path, err := exec.LookPath("kubectl-podtrace")
	if err != nil {
		if os.Getenv("E2E_REQUIRE_PLUGIN") != "" {
			t.Fatalf("kubectl-podtrace is not on PATH: %v", err)
		}
		t.Skip("kubectl-podtrace is not on PATH")
	}
	list := kubectl(t, adminConfig, "plugin", "list", "--name-only")
	if !strings.Contains(list.stdout, "kubectl-podtrace") {
		t.Errorf("kubectl plugin list does not show kubectl-podtrace (%s):\n%s", path, list)
	}
	v := mustKubectl(t, adminConfig, "podtrace", "version")
	if !strings.HasPrefix(v, "kubectl-podtrace ") {
		t.Errorf("kubectl podtrace version: %q", v)
	}
}
