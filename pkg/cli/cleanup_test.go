package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/podtrace/kubectl-podtrace/pkg/kube"
)

// TestCleanupSessionDeletesItsRunningNodePods: what an interrupted run
// names — `cleanup --session ID` — deletes that session's node agent pods
// although they still run (plain cleanup keeps running ones), and no other
// session's. The API server is a local one that selects by labels as a real
// one does.
func TestCleanupSessionDeletesItsRunningNodePods(t *testing.T) {
	nodePod := func(name, session string) corev1.Pod {
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "podtrace-system", CreationTimestamp: metav1.Now(),
				Labels: map[string]string{kube.ManagedByLabel: kube.ManagedBy, kube.SessionLabel: session}},
			Spec:   corev1.PodSpec{ActiveDeadlineSeconds: ptr.To[int64](3600)},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		}
	}
	pods := []corev1.Pod{nodePod("podtrace-abc123-node-1", "abc123"), nodePod("podtrace-abc123-node-2", "abc123"), nodePod("podtrace-def456-node-1", "def456")}
	var mu sync.Mutex
	var deleted []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodDelete:
			deleted = append(deleted, r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Success"}`)
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/podtrace-system/pods":
			sel, err := labels.Parse(r.URL.Query().Get("labelSelector"))
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
			for _, p := range pods {
				if sel.Matches(labels.Set(p.Labels)) {
					list.Items = append(list.Items, p)
				}
			}
			_ = json.NewEncoder(w).Encode(list)
		default:
			fmt.Fprint(w, `{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}`)
		}
	}))
	defer srv.Close()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %s}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n", srv.URL)
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	out, _, err := runCLI(t, "cleanup", "--kubeconfig", kc)
	mu.Lock()
	if err != nil || len(deleted) != 0 || strings.Count(out, "kept    pod") != 3 {
		t.Errorf("plain cleanup: %v, deleted %v; want the 3 running pods kept:\n%s", err, deleted, out)
	}
	mu.Unlock()

	out, _, err = runCLI(t, "cleanup", "--kubeconfig", kc, "--session", "abc123")
	mu.Lock()
	if err != nil || strings.Join(deleted, ",") != "podtrace-abc123-node-1,podtrace-abc123-node-2" {
		t.Errorf("cleanup --session abc123: %v, deleted %v; want abc123's two pods only:\n%s", err, deleted, out)
	}
	mu.Unlock()

	_, _, err = runCLI(t, "cleanup", "--kubeconfig", kc, "--session", "a b")
	if err == nil || !strings.Contains(err.Error(), `--session "a b"`) {
		t.Errorf("a session id that is no label value: %v", err)
	}
}
