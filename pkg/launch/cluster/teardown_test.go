package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podtrace/kubectl-podtrace/pkg/kube"
)

// TestTeardownEndsWithinOneBudget: an API server that takes every delete
// and list and never answers (a network partition, an overloaded server).
// Three node pods to delete: the teardown ends once its one budget is
// spent — not one timeout per pod — having tried every delete, and says
// which pods may be left and how to remove them. Only a hang, or a budget
// spent once per pod, reaches the test's bound.
func TestTeardownEndsWithinOneBudget(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Method]++
		mu.Unlock()
		select { // never answers: only the client giving up ends the request
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	const budget = 2 * time.Second
	l := &Launcher{Client: cs, Params: kube.AgentParams{Session: "abc123", Namespace: "podtrace-system"}, TeardownBudget: budget}
	for _, n := range []string{"podtrace-abc123-node-1", "podtrace-abc123-node-2", "podtrace-abc123-node-3"} {
		l.created = append(l.created, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "podtrace-system"}})
	}
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- l.Cleanup() }()
	// Per-pod timeouts, one after the other, would take 3 × 20 s.
	const bound = 10 * budget
	select {
	case err = <-errc:
	case <-time.After(bound):
		t.Fatalf("teardown still running after %v with a budget of %v", bound, budget)
	}
	took := time.Since(start)
	t.Logf("teardown gave up after %v (budget %v): %v", took.Round(time.Millisecond), budget, err)
	if err == nil {
		t.Fatal("teardown against a server that never answers reported success")
	}
	msg := err.Error()
	for _, want := range []string{"podtrace-abc123-node-1", "podtrace-abc123-node-2", "podtrace-abc123-node-3", "kubectl podtrace cleanup --session abc123", budget.String()} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen[http.MethodDelete] != 3 {
		t.Errorf("the server saw %d deletes; want one per pod, all tried within the budget", seen[http.MethodDelete])
	}
	if took < budget {
		t.Errorf("teardown gave up after %v, before its budget of %v", took, budget)
	}
}

// TestCleanupDeletesEachPodOnce: the pods the launcher created and one
// whose creation raced with a cancellation (the session's label finds it
// on the server) are each deleted once: a pod the launcher knows is not
// deleted again because the label list, sent while its delete runs,
// still shows it.
func TestCleanupDeletesEachPodOnce(t *testing.T) {
	const ns = "podtrace-system"
	known := []string{"podtrace-abc123-node-1", "podtrace-abc123-node-2"}
	onServer := append([]string{"podtrace-abc123-node-3"}, known...)
	var mu sync.Mutex
	deletes := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodDelete:
			mu.Lock()
			deletes[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
			mu.Unlock()
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Success"}`)
		case http.MethodGet:
			// every pod of the session, whatever deletes are in flight
			list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
			for _, n := range onServer {
				list.Items = append(list.Items, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: ns}})
			}
			_ = json.NewEncoder(w).Encode(list)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	l := &Launcher{Client: cs, Params: kube.AgentParams{Session: "abc123", Namespace: ns}}
	for _, n := range known {
		l.created = append(l.created, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: ns}})
	}
	if err := l.Cleanup(); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range onServer {
		if deletes[n] != 1 {
			t.Errorf("pod %s deleted %d times; want once", n, deletes[n])
		}
	}
	if len(deletes) != len(onServer) {
		t.Errorf("deletes %v; want one of each of %v", deletes, onServer)
	}
}
