package kube

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// ErrEphemeralDisabled means the cluster does not serve the
// pods/ephemeralcontainers subresource.
var ErrEphemeralDisabled = errors.New("ephemeral containers are disabled in this cluster (the pods/ephemeralcontainers subresource answers 404): use --mode node --passive, or enable the EphemeralContainers feature (Kubernetes ≥ 1.23 has it on)")

// policyRE reads the API server's refusal by a ValidatingAdmissionPolicy.
var policyRE = regexp.MustCompile(`ValidatingAdmissionPolicy '([^']+)' with binding '[^']*' denied request: (.*)$`)

var podSecurityRE = regexp.MustCompile(`violates PodSecurity "([a-z]+):([^"]*)": (.*)$`)

// PodSecurityError is a refusal by the PodSecurity admission controller.
type PodSecurityError struct {
	Namespace string
	Level     string // baseline, restricted
	Version   string
	Detail    string
	What      string // what was refused
}

func (e *PodSecurityError) Error() string {
	return fmt.Sprintf("%s: PodSecurity %q enforced on namespace %q (label pod-security.kubernetes.io/enforce=%s) refuses it: %s",
		e.What, e.Level, e.Namespace, e.Level, e.Detail)
}

// Explain maps an API error to a message that says what failed and what
// to do; what describes the step ("inject the agent into pod e2e/pod-a").
func Explain(err error, what string) error { return ExplainNS(err, what, "") }

// ExplainNS is Explain for a step in namespace ns.
func ExplainNS(err error, what, ns string) error {
	if err == nil {
		return nil
	}
	var ne net.Error
	switch {
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "violates PodSecurity"):
		m := podSecurityRE.FindStringSubmatch(err.Error())
		pe := &PodSecurityError{What: what, Detail: err.Error(), Namespace: ns}
		if m != nil {
			pe.Level, pe.Version, pe.Detail = m[1], m[2], m[3]
		}
		return pe
	case policyRE.MatchString(err.Error()):
		m := policyRE.FindStringSubmatch(err.Error())
		hint := "ask your cluster admin"
		if strings.HasPrefix(m[1], "podtrace-") {
			hint = "the cluster admin decides what it admits (deploy/README.md); an --image must be one the admin allowed"
		}
		return fmt.Errorf("%s: the admission policy %q refuses it: %s (%s)", what, m[1], m[2], hint)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: permission denied: %s (bind the ClusterRole and Role in deploy/user-rbac.yaml to your user)", what, apiMessage(err))
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: not logged in to the cluster (%s): check your kubeconfig credentials", what, apiMessage(err))
	case errors.As(err, &ne) || strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host"):
		return fmt.Errorf("%s: the API server is unreachable: %v (check --kubeconfig, --context, --server)", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func apiMessage(err error) string {
	var se *apierrors.StatusError
	if errors.As(err, &se) && se.ErrStatus.Message != "" {
		return se.ErrStatus.Message
	}
	return err.Error()
}

// IsEphemeralDisabled recognises the 404 the API server gives when the
// ephemeralcontainers subresource does not exist (as kubectl debug does).
func IsEphemeralDisabled(err error) bool {
	var se *apierrors.StatusError
	if !errors.As(err, &se) || !apierrors.IsNotFound(err) {
		return false
	}
	d := se.ErrStatus.Details
	return d == nil || d.Name == "" && d.Kind == ""
}
