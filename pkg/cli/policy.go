package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/podtrace/kubectl-podtrace/pkg/kube"
	"github.com/podtrace/kubectl-podtrace/pkg/policy"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// policyModel is the NetworkPolicy model's answer for the probe, read while
// the agents start.
type policyModel struct {
	done             chan struct{}
	st               policy.Statement
	err              error
	srcNode, dstNode string
}

// startPolicyModel reads the policies and evaluates the probe's flow in the
// background; nil for a passive trace (no flow to judge).
func (o *ClusterOptions) startPolicyModel(ctx context.Context) *policyModel {
	if o.Passive {
		return nil
	}
	m := &policyModel{done: make(chan struct{}), srcNode: o.src.Node}
	if o.svc != nil {
		// The policies judge the endpoint pod and its target port after
		// the Service's DNAT, not the virtual IP and port probed.
		m.err = fmt.Errorf("not evaluated for a Service destination (policies apply to the endpoint pod and target port after the DNAT): trace to the endpoint pod for it")
		close(m.done)
		return m
	}
	m.dstNode = o.dst.Node
	probe := o.ProbeSpec(o.dst.IP)
	go func() {
		defer close(m.done)
		m.st, m.err = kube.PolicyStatement(ctx, o.client, o.src, o.dst, probeFlow(probe))
	}()
	return m
}

// annotate puts the model's statement on a finished trace.
func (m *policyModel) annotate(t *trace.Trace) {
	if m == nil {
		return
	}
	<-m.done
	t.Policy = policyEvidence(m.st, m.err, t.Verdict, m.srcNode, m.dstNode)
}

// line is the model's statement for the dry run's notes.
func (m *policyModel) line() string {
	if m == nil {
		return "NetworkPolicy model: none for a passive trace"
	}
	<-m.done
	if m.err != nil {
		return "NetworkPolicy model unavailable: " + m.err.Error()
	}
	return "NetworkPolicy model: " + m.st.String()
}

func probeFlow(p *wire.ProbeSpec) policy.Flow {
	return policy.Flow{Protocol: strings.ToUpper(p.Proto), Port: int32(p.Port)}
}

// policyEvidence sets the model's statement beside the live verdict and says
// when they disagree: a probe delivered while the model denies it (no
// policy engine on this path, or the engine or the model is wrong), or one
// lost on a node of the two pods (where a NetworkPolicy engine drops) while
// the model admits it.
func policyEvidence(st policy.Statement, err error, v trace.Verdict, srcNode, dstNode string) *trace.PolicyEvidence {
	if err != nil {
		return &trace.PolicyEvidence{Unavailable: err.Error() + "; the trace is shown without it"}
	}
	e := &trace.PolicyEvidence{Admitted: st.Admitted(), Statement: st.String()}
	switch {
	case v.Delivered > 0 && !e.Admitted:
		e.Disagreement = fmt.Sprintf("the probe was delivered (%d of %d) while the model denies it: the cluster enforces no NetworkPolicy on this path, or its policy engine or the model is wrong", v.Delivered, v.Sent)
	case v.Result == "lost" && e.Admitted && (onNode(v.LastSeen, srcNode) || onNode(v.LastSeen, dstNode)):
		e.Disagreement = fmt.Sprintf("the probe was lost (last seen %s) while the model admits it: the drop is not a NetworkPolicy's, or the policy engine or the model is wrong", v.LastSeen)
	}
	return e
}

// onNode: a place ("node-1 cni0 (+31 µs)") is on the node agent of node.
func onNode(place, node string) bool {
	return node != "" && strings.HasPrefix(place, node+" ")
}
