//go:build e2e

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTraceWithExecCredentialPlugin: the limited user's credential comes
// from an exec credential plugin (client.authentication.k8s.io/v1), as
// with cloud providers' kubeconfigs, instead of sitting in the kubeconfig.
// The whole trace — resolve, preflight, ephemeral containers, node pod,
// attach, delete — runs with it.
func TestTraceWithExecCredentialPlugin(t *testing.T) {
	var cfg struct {
		Clusters []struct {
			Cluster map[string]any `json:"cluster"`
		} `json:"clusters"`
		Users []struct {
			User struct {
				Token    string `json:"token"`
				CertData string `json:"client-certificate-data"`
				KeyData  string `json:"client-key-data"`
			} `json:"user"`
		} `json:"users"`
	}
	out := mustKubectl(t, userConfig, "config", "view", "--raw", "--minify", "--flatten", "-o", "json")
	if err := json.Unmarshal([]byte(out), &cfg); err != nil || len(cfg.Clusters) != 1 || len(cfg.Users) != 1 {
		t.Fatalf("the limited user's kubeconfig: %v\n%s", err, out)
	}
	u := cfg.Users[0].User
	status := map[string]string{}
	switch {
	case u.Token != "":
		status["token"] = u.Token
	case u.CertData != "" && u.KeyData != "":
		cert, _ := base64.StdEncoding.DecodeString(u.CertData)
		key, _ := base64.StdEncoding.DecodeString(u.KeyData)
		status["clientCertificateData"], status["clientKeyData"] = string(cert), string(key)
	default:
		t.Fatal("the limited user's kubeconfig holds neither a token nor a client certificate")
	}
	cred, _ := json.Marshal(map[string]any{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status})
	dir := t.TempDir()
	calls, plugin := filepath.Join(dir, "calls"), filepath.Join(dir, "credential-plugin")
	script := "#!/bin/sh\necho call >> " + calls + "\ncat " + filepath.Join(dir, "credential.json") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "credential.json"), cred, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plugin, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	kc, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "exec",
		"clusters": []any{map[string]any{"name": "e2e", "cluster": cfg.Clusters[0].Cluster}},
		"users": []any{map[string]any{"name": "exec-user", "user": map[string]any{"exec": map[string]any{
			"apiVersion": "client.authentication.k8s.io/v1", "command": plugin, "interactiveMode": "Never"}}}},
		"contexts": []any{map[string]any{"name": "exec", "context": map[string]any{"cluster": "e2e", "user": "exec-user", "namespace": "e2e"}}},
	})
	execConfig := filepath.Join(dir, "exec.kubeconfig")
	if err := os.WriteFile(execConfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}

	dst := freshPod(t, "e2e")
	start := time.Now()
	r := kubectl(t, execConfig, podtraceArgs("pod-a", dst, "--color", "never")...)
	t.Logf("kubectl podtrace pod-a %s with an exec credential plugin: %v\n%s", dst, time.Since(start).Round(time.Millisecond), r)
	if r.err != nil {
		t.Fatalf("trace failed: %v", r.err)
	}
	if !strings.Contains(r.stdout, "verdict DELIVERED") {
		t.Errorf("trace lacks the delivered verdict")
	}
	b, err := os.ReadFile(calls)
	if err != nil || strings.Count(string(b), "call") == 0 {
		t.Errorf("the credential plugin was not run: %v", err)
	}
	t.Logf("credential plugin run %d times", strings.Count(string(b), "call"))
	noNodePodsEventually(t)
}
