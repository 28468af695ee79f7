//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Settings shared with the harness scripts (test/e2e/lib.sh); the environment overrides them.
var (
	stateDir    = env("E2E_STATE", "/tmp/podtrace-e2e")
	agentImage  = env("AGENT_IMAGE", "podtrace.local/podtrace-agent:e2e")
	podCIDR     = env("POD_CIDR", "10.244.0.0/24")
	nodeName    = env("NODE_NAME", "podtrace-e2e-node")
	adminConfig = filepath.Join(stateDir, "admin.kubeconfig")
	userConfig  = filepath.Join(stateDir, "user.kubeconfig")
)

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	for _, f := range []string{adminConfig, userConfig} {
		if _, err := os.Stat(f); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v: the cluster is not up (make e2e-up)\n", err)
			os.Exit(1)
		}
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: kubectl not on PATH")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// result of one kubectl run
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// kubectl runs the real kubectl with the given kubeconfig, as a user would.
func kubectl(t *testing.T, kubeconfig string, args ...string) result {
	t.Helper()
	return kubectlIn(t, kubeconfig, nil, args...)
}

// kubectlIn is kubectl with stdin (nil: none).
func kubectlIn(t *testing.T, kubeconfig string, stdin []byte, args ...string) result {
	t.Helper()
	// not t.Context(): it is cancelled before t.Cleanup functions run, and
	// cleanups call kubectl too
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	t.Logf("kubectl %s (%s, %v)", strings.Join(args, " "), filepath.Base(kubeconfig), time.Since(start).Round(time.Millisecond))
	return result{out.String(), errb.String(), err}
}

// mustKubectl is kubectl that fails the test on a non-zero exit.
func mustKubectl(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	r := kubectl(t, kubeconfig, args...)
	if r.err != nil {
		t.Fatalf("kubectl %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// getJSON reads one object as JSON into v.
func getJSON(t *testing.T, kubeconfig string, v any, args ...string) {
	t.Helper()
	out := mustKubectl(t, kubeconfig, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("decode %v: %v", args, err)
	}
}

// eventually polls cond every 200ms until it returns true or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pod is the part of a Pod the tests look at.
type pod struct {
	Spec struct {
		NodeName            string `json:"nodeName"`
		EphemeralContainers []struct {
			Name            string   `json:"name"`
			Image           string   `json:"image"`
			ImagePullPolicy string   `json:"imagePullPolicy"`
			Command         []string `json:"command"`
			SecurityContext *struct {
				Privileged             *bool `json:"privileged"`
				ReadOnlyRootFilesystem *bool `json:"readOnlyRootFilesystem"`
				SeccompProfile         *struct {
					Type string `json:"type"`
				} `json:"seccompProfile"`
			} `json:"securityContext"`
		} `json:"ephemeralContainers"`
	} `json:"spec"`
	Status struct {
		Phase                      string            `json:"phase"`
		PodIP                      string            `json:"podIP"`
		EphemeralContainerStatuses []containerStatus `json:"ephemeralContainerStatuses"`
	} `json:"status"`
}

type containerStatus struct {
	Name  string `json:"name"`
	State struct {
		Waiting *struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"waiting"`
		Running    *struct{} `json:"running"`
		Terminated *struct {
			ExitCode int    `json:"exitCode"`
			Reason   string `json:"reason"`
		} `json:"terminated"`
	} `json:"state"`
}

func (p *pod) ephemeralStatus(name string) *containerStatus {
	for i := range p.Status.EphemeralContainerStatuses {
		if p.Status.EphemeralContainerStatuses[i].Name == name {
			return &p.Status.EphemeralContainerStatuses[i]
		}
	}
	return nil
}

// uniqueName returns a short name for a container that is new in this run
// (ephemeral containers can never be removed, so names must not repeat).
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%x", prefix, time.Now().UnixNano()&0xffffff)
}
