package cli

import (
	"fmt"
	"strings"
)

// Modes of a cluster trace: where its agents run.
const (
	// modeAuto picks the richest mode the pods' namespaces admit.
	modeAuto = "auto"
	// modeEphemeral: a capture agent in each pod (an ephemeral container
	// that adds NET_RAW and NET_ADMIN) and one on each node.
	modeEphemeral = "ephemeral"
	// modeUnprivileged: an unprivileged agent in the source pod (non-root,
	// no capability: PodSecurity restricted admits it) sends the probe and
	// captures nothing; the node agents capture, the pods' own eth0 is not
	// captured.
	modeUnprivileged = "unprivileged"
	// modeNode: node agents only (passive).
	modeNode = "node"
)

// PodSecurity levels (pod-security.kubernetes.io/enforce).
const (
	levelPrivileged = "privileged"
	levelBaseline   = "baseline"
	levelRestricted = "restricted"
)

// EnforceLabel is the namespace label PodSecurity admission enforces.
const EnforceLabel = "pod-security.kubernetes.io/enforce"

// nsLevel is the PodSecurity level a namespace enforces, as its labels say.
type nsLevel struct {
	Namespace string
	// Level is the enforced level; "" when the labels could not be read
	// (the server-side dry run of the plan is then the only judge).
	Level string
	// Labelled: the level comes from the namespace's enforce label (else
	// it is the default, privileged, unless the cluster's admission
	// configuration sets another default: the dry run tells).
	Labelled bool
}

// enforceLevel is the level a namespace's labels enforce. Without the
// label PodSecurity applies the cluster's default (privileged unless the
// admission configuration says otherwise); a value that is not a level
// is evaluated as restricted (the PodSecurity admission controller's
// rule for an invalid enforce label).
func enforceLevel(ns string, labels map[string]string) nsLevel {
	v, ok := labels[EnforceLabel]
	if !ok {
		return nsLevel{Namespace: ns, Level: levelPrivileged}
	}
	switch v {
	case levelPrivileged, levelBaseline, levelRestricted:
		return nsLevel{Namespace: ns, Level: v, Labelled: true}
	}
	return nsLevel{Namespace: ns, Level: levelRestricted, Labelled: true}
}

// admits tells whether PodSecurity at level admits the pod agent of a
// mode, from the Pod Security Standards: baseline forbids adding any
// capability beyond its default set (NET_RAW and NET_ADMIN are not in
// it), restricted also wants runAsNonRoot, every capability dropped,
// allowPrivilegeEscalation false and a seccomp profile; the unprivileged
// agent meets all of that. Mode node puts no agent in the pods.
func admits(level, mode string) bool {
	switch mode {
	case modeNode, modeUnprivileged:
		return true
	case modeEphemeral:
		return level == levelPrivileged
	}
	return false
}

// chooseMode is the mode of a trace and why: the requested one, or with
// auto the richest that the levels of the namespaces whose pods would
// get an agent admit (src: the source's namespace, pods: every traced
// pod's). A level not known ("") is taken as admitting: the server-side
// dry run of the plan judges, and a refusal steps down (stepDown).
func chooseMode(requested string, passive bool, src nsLevel, pods []nsLevel) (mode, why string) {
	if requested != modeAuto {
		return requested, "as asked (--mode " + requested + ")"
	}
	for _, l := range pods {
		if l.Level == "" || admits(l.Level, modeEphemeral) {
			continue
		}
		cause := levelText(l) + ", which forbids the capture agent's NET_RAW and NET_ADMIN"
		if passive {
			return modeNode, whyNode(cause)
		}
		return modeUnprivileged, whyUnprivileged(cause)
	}
	var ls []string
	for _, l := range pods {
		if l.Level != "" {
			ls = append(ls, levelText(l))
		}
	}
	why = "PodSecurity admits the capture agent in the pods"
	if len(ls) > 0 {
		why += " (" + strings.Join(ls, "; ") + ")"
	}
	return modeEphemeral, why
}

func whyNode(cause string) string {
	return cause + ": observing from the nodes only (pod eth0 hops are not observable)"
}

func whyUnprivileged(cause string) string {
	return cause + ": probing from an unprivileged agent in the source pod (non-root, no capability); the pods' own eth0 is not captured, the node agents see their veths"
}

// stepDown is the next mode auto tries when PodSecurity refused the
// plan of mode ("" when there is none): from the capture agents to the
// unprivileged prober for an active trace, to the node agents for a
// passive one.
func stepDown(mode string, passive bool) string {
	switch {
	case mode == modeEphemeral && passive:
		return modeNode
	case mode == modeEphemeral:
		return modeUnprivileged
	}
	return ""
}

func levelText(l nsLevel) string {
	if !l.Labelled {
		return fmt.Sprintf("namespace %q enforces PodSecurity %q (no %s label)", l.Namespace, l.Level, EnforceLabel)
	}
	return fmt.Sprintf("namespace %q enforces PodSecurity %q", l.Namespace, l.Level)
}
