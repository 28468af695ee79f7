// Package ref parses the pod references a user writes on the command
// line. It is apart from package kube so that it builds (and fuzzes)
// without a Kubernetes client.
package ref

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Ref names a pod as the user wrote it.
type Ref struct {
	Namespace string
	Name      string
}

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// Parse accepts "pod", "ns/pod", "pod/NAME" and "ns/pod/NAME"; the
// namespace must be a DNS label and the name a DNS subdomain, as the API
// server requires of them.
func Parse(arg, defaultNamespace string) (Ref, error) {
	r, err := splitRef(arg, defaultNamespace)
	if err != nil {
		return Ref{}, err
	}
	if msgs := validation.IsDNS1123Label(r.Namespace); len(msgs) > 0 {
		return Ref{}, fmt.Errorf("%q: namespace %q is not valid: %s", arg, r.Namespace, msgs[0])
	}
	if msgs := validation.IsDNS1123Subdomain(r.Name); len(msgs) > 0 {
		return Ref{}, fmt.Errorf("%q: pod name %q is not valid: %s", arg, r.Name, msgs[0])
	}
	return r, nil
}

func splitRef(arg, defaultNamespace string) (Ref, error) {
	parts := strings.Split(arg, "/")
	bad := fmt.Errorf("%q is not a pod: use NAME, NAMESPACE/NAME or pod/NAME", arg)
	for _, p := range parts {
		if p == "" {
			return Ref{}, bad
		}
	}
	switch len(parts) {
	case 1:
		return Ref{defaultNamespace, parts[0]}, nil
	case 2:
		if parts[0] == "pod" || parts[0] == "pods" || parts[0] == "po" {
			return Ref{defaultNamespace, parts[1]}, nil
		}
		return Ref{parts[0], parts[1]}, nil
	case 3:
		if parts[1] == "pod" || parts[1] == "pods" || parts[1] == "po" {
			return Ref{parts[0], parts[2]}, nil
		}
	}
	return Ref{}, bad
}
