package cli

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// apiServer is a TLS server that answers like an API server to a client
// that presents token (Bearer), and 401 Unauthorized to any other: pod
// lists are empty, and any single pod is not found. It records the
// requests it authorized.
type apiServer struct {
	*httptest.Server
	mu     sync.Mutex
	authed []string // "METHOD path" of authorized requests
	denied int
}

func newAPIServer(t *testing.T, token string) *apiServer {
	s := &apiServer{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+token {
			s.mu.Lock()
			s.denied++
			s.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`)
			return
		}
		s.mu.Lock()
		s.authed = append(s.authed, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		switch {
		case len(parts) >= 4 && parts[len(parts)-1] == "pods": // a list
			fmt.Fprint(w, `{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			name := parts[len(parts)-1]
			fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods %q not found","reason":"NotFound","details":{"name":%q,"kind":"pods"},"code":404}`, name, name)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// kubeconfig writes a kubeconfig for the server with the given user entry
// (YAML, indented under "user:").
func (s *apiServer) kubeconfig(t *testing.T, user string) string {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: u
  user:
%s
contexts:
- name: ctx
  context: {cluster: c, user: u, namespace: default}
current-context: ctx
`, s.URL, base64.StdEncoding.EncodeToString(ca), user)
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKubeconfigCredentialsAsKubectlHasThem: kubeconfigs whose user is an
// exec credential plugin (client.authentication.k8s.io/v1) or the OIDC
// auth provider with an unexpired ID token reach the API server with the
// credential they produce, for the trace command (the pods are resolved:
// the server says not found, not unauthorized) and for cleanup (which
// lists pods and succeeds). The server is a local TLS server, not a
// cluster; the exec plugin also runs against the real e2e cluster
// (test/e2e, TestTraceWithExecCredentialPlugin).
func TestKubeconfigCredentialsAsKubectlHasThem(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	plugin := filepath.Join(dir, "credential-plugin")
	script := `#!/bin/sh
echo call >> "$PODTRACE_TEST_CALLS"
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-token-4711"}}'
`
	if err := os.WriteFile(plugin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"iss": "https://issuer.example", "aud": "podtrace", "sub": "support", "exp": time.Now().Add(time.Hour).Unix()})
	enc := base64.RawURLEncoding.EncodeToString
	idToken := enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc(payload) + "." + enc([]byte("signature"))

	for _, c := range []struct {
		name, token, user string
	}{
		{"exec plugin", "exec-token-4711", fmt.Sprintf(`    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: %s
      env: [{name: PODTRACE_TEST_CALLS, value: %s}]
      interactiveMode: Never`, plugin, calls)},
		{"oidc auth provider", idToken, fmt.Sprintf(`    auth-provider:
      name: oidc
      config: {idp-issuer-url: "https://issuer.example", client-id: podtrace, id-token: %q}`, idToken)},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newAPIServer(t, c.token)
			kc := srv.kubeconfig(t, c.user)
			out, errOut, err := runCLI(t, "cleanup", "--kubeconfig", kc)
			if err != nil || !strings.Contains(out, "0 node agent pod(s) deleted") {
				t.Fatalf("cleanup: %v\nstdout: %s\nstderr: %s", err, out, errOut)
			}
			_, _, err = runCLI(t, "pod-a", "pod-b", "--kubeconfig", kc)
			if err == nil || !strings.Contains(err.Error(), "pod-a") || strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
				t.Fatalf("trace: %v; want pod-a not found, as the authorized server says", err)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			got := strings.Join(srv.authed, "\n")
			if srv.denied != 0 || !strings.Contains(got, "GET /api/v1/namespaces/podtrace-system/pods") || !strings.Contains(got, "GET /api/v1/namespaces/default/pods/pod-a") {
				t.Errorf("%d requests denied; authorized:\n%s", srv.denied, got)
			}
			t.Logf("trace error: %v; %d requests authorized", err, len(srv.authed))
		})
	}
	if b, err := os.ReadFile(calls); err != nil || strings.Count(string(b), "call") == 0 {
		t.Errorf("the exec plugin was not run: %v", err)
	}
}
