package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podtrace/kubectl-podtrace/pkg/agent"
	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// The plugin builds the agent's command line (launch.Spec.Args) and the
// agent parses it (parseArgs): every field a launcher sets must arrive
// in the agent's Config as the launcher meant it.
func TestAgentParsesTheArgumentsLaunchersBuild(t *testing.T) {
	probe := &wire.ProbeSpec{Proto: "tcp", Dst: "10.244.0.3", Port: 8080, Count: 3,
		Interval: 300 * time.Millisecond, Timeout: 2 * time.Second, ID: 40000, NAT: true}
	for _, tc := range []struct {
		name string
		spec launch.Spec
		want agent.Config
	}{{
		name: "prober, every field",
		spec: launch.Spec{ID: "pod-a", Role: wire.RolePod, Name: "default/pod-a", Node: "node-1", Target: "ignored",
			Hosts: []string{"10.244.0.2", "10.244.0.3"}, Filter: "tcp port 8080", Snaplen: 300,
			Deadline: 75 * time.Second, Probe: probe, SummarizeAbove: 900, SummaryInterval: 2 * time.Second, Budget: 4096},
		want: agent.Config{ID: "pod-a", Role: wire.RolePod, Name: "default/pod-a", Node: "node-1",
			Hosts: []string{"10.244.0.2", "10.244.0.3"}, Filter: "tcp port 8080", Snaplen: 300, Promisc: true,
			Deadline: 75 * time.Second, Control: "stdin", Probe: probe, SummarizeAbove: 900,
			SummaryInterval: 2 * time.Second, SummaryRecords: wire.DefaultSummaryRecords, Budget: 4096},
	}, {
		name: "tracer of another agent's probe, payload, no budget",
		spec: launch.Spec{ID: "node-1", Role: wire.RoleNode, Name: "node-1", Node: "node-1",
			Hosts: []string{"10.244.0.2", "10.244.0.3"}, Payload: true, Deadline: time.Minute,
			Match: &wire.ProbeSpec{Proto: "udp", Dst: "10.244.0.3", Port: 53, Count: 2, ID: 41000}, Budget: -1, KernelDrops: true},
		want: agent.Config{ID: "node-1", Role: wire.RoleNode, Name: "node-1", Node: "node-1",
			Hosts: []string{"10.244.0.2", "10.244.0.3"}, Snaplen: wire.PayloadSnaplen, Payload: true, Promisc: true,
			Deadline: time.Minute, Control: "stdin", KernelDrops: true,
			// Interval and Timeout are the flags' defaults: a tracer sends nothing.
			Match:           &wire.ProbeSpec{Proto: "udp", Dst: "10.244.0.3", Port: 53, Count: 2, ID: 41000, Interval: 200 * time.Millisecond, Timeout: time.Second},
			SummaryInterval: wire.DefaultSummaryInterval, SummaryRecords: wire.DefaultSummaryRecords, Budget: -1},
	}, {
		name: "tracer of a probe to a Service's virtual IP",
		spec: launch.Spec{ID: "node-2", Role: wire.RoleNode, Name: "node-2", Node: "node-2",
			Hosts: []string{"10.244.0.2", "10.96.0.10"}, Deadline: time.Minute,
			Match: &wire.ProbeSpec{Proto: "tcp", Dst: "10.96.0.10", Port: 80, Count: 1, ID: 42000, NAT: true}, NFTrace: true},
		want: agent.Config{ID: "node-2", Role: wire.RoleNode, Name: "node-2", Node: "node-2", NFTrace: true,
			Hosts: []string{"10.244.0.2", "10.96.0.10"}, Snaplen: wire.DefaultSnaplen, Promisc: true,
			Deadline: time.Minute, Control: "stdin",
			Match:           &wire.ProbeSpec{Proto: "tcp", Dst: "10.96.0.10", Port: 80, Count: 1, ID: 42000, NAT: true, Interval: 200 * time.Millisecond, Timeout: time.Second},
			SummaryInterval: wire.DefaultSummaryInterval, SummaryRecords: wire.DefaultSummaryRecords, Budget: wire.DefaultBudget},
	}, {
		name: "unprivileged prober",
		spec: launch.Spec{ID: "pod-a", Role: wire.RolePod, Name: "shop/pod-a", Node: "node-1",
			Hosts: []string{"10.244.0.2", "10.244.0.3"}, Deadline: time.Minute, Unprivileged: true,
			Probe: &wire.ProbeSpec{Proto: "icmp", Dst: "10.244.0.3", Count: 1, Interval: time.Second, Timeout: time.Second, ID: 43000}},
		want: agent.Config{ID: "pod-a", Role: wire.RolePod, Name: "shop/pod-a", Node: "node-1",
			Hosts: []string{"10.244.0.2", "10.244.0.3"}, Snaplen: wire.DefaultSnaplen, Promisc: true,
			Deadline: time.Minute, Control: "stdin", Unprivileged: true,
			Probe:           &wire.ProbeSpec{Proto: "icmp", Dst: "10.244.0.3", Count: 1, Interval: time.Second, Timeout: time.Second, ID: 43000},
			SummaryInterval: wire.DefaultSummaryInterval, SummaryRecords: wire.DefaultSummaryRecords, Budget: wire.DefaultBudget},
	}, {
		name: "lingering tracer",
		spec: launch.Spec{ID: "node-1", Role: wire.RoleNode, Name: "node-1", Node: "node-1",
			Hosts: []string{"10.244.0.2", "10.244.0.3"}, Deadline: time.Minute,
			Match:  &wire.ProbeSpec{Proto: "icmp", Dst: "10.244.0.3", Count: 1, ID: 41000},
			Linger: 2 * time.Minute, Lifetime: 21 * time.Minute, WarmKey: "v1.2.3.0123456789abcdef"},
		want: agent.Config{ID: "node-1", Role: wire.RoleNode, Name: "node-1", Node: "node-1",
			Hosts: []string{"10.244.0.2", "10.244.0.3"}, Snaplen: wire.DefaultSnaplen, Promisc: true,
			Deadline: time.Minute, Control: "stdin",
			Match:           &wire.ProbeSpec{Proto: "icmp", Dst: "10.244.0.3", Count: 1, ID: 41000, Interval: 200 * time.Millisecond, Timeout: time.Second},
			SummaryInterval: wire.DefaultSummaryInterval, SummaryRecords: wire.DefaultSummaryRecords, Budget: wire.DefaultBudget,
			Linger: 2 * time.Minute, Lifetime: 21 * time.Minute, WarmKey: "v1.2.3.0123456789abcdef"},
	}, {
		name: "defaults",
		spec: launch.Spec{ID: "pod-b", Role: wire.RolePod, Deadline: 30 * time.Second},
		want: agent.Config{ID: "pod-b", Role: wire.RolePod, Snaplen: wire.DefaultSnaplen, Promisc: true,
			Deadline: 30 * time.Second, Control: "stdin", SummaryInterval: wire.DefaultSummaryInterval,
			SummaryRecords: wire.DefaultSummaryRecords, Budget: wire.DefaultBudget},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseArgs(tc.spec.Args())
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tc.spec.Args(), err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseArgs(%q) (-want +got):\n%s", tc.spec.Args(), diff)
			}
		})
	}
}

// A field added to launch.Spec must be added to the cases above (and
// built by Spec.Args) before this test passes again.
func TestArgsTestCoversEverySpecField(t *testing.T) {
	covered := []string{"ID", "Role", "Name", "Node", "Target", "Hosts", "Filter", "Snaplen", "Payload",
		"Deadline", "Probe", "Match", "SummarizeAbove", "SummaryInterval", "Budget", "NFTrace", "KernelDrops", "Unprivileged", "Linger", "Lifetime", "WarmKey"}
	var fields []string
	for f := range reflect.TypeFor[launch.Spec]().Fields() {
		fields = append(fields, f.Name)
	}
	if diff := cmp.Diff(covered, fields); diff != "" {
		t.Errorf("launch.Spec fields (-covered by TestAgentParsesTheArgumentsLaunchersBuild +in launch.Spec):\n%s", diff)
	}
}
