package session

import (
	"errors"
	"testing"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
)

func TestJoinByCauseSaysAlikeErrorsOnce(t *testing.T) {
	specs := []launch.Spec{{ID: "pod-a"}, {ID: "pod-b"}, {ID: "node-1"}, {ID: "node-2"}}
	errs := []error{
		errors.New(`pod-a: the agent image "x" cannot be pulled`),
		errors.New(`pod-b: the agent image "x" cannot be pulled`),
		nil,
		errors.New(`node "node-2" is gone`),
	}
	got := joinByCause(specs, errs).Error()
	want := "pod-a, pod-b: the agent image \"x\" cannot be pulled\nnode-2: node \"node-2\" is gone"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if joinByCause(specs, make([]error, 4)) != nil {
		t.Error("no errors must join to nil")
	}
}
