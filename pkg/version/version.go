// Package version holds build information injected with -ldflags -X.
package version

import "runtime"

// Set at build time: -X github.com/podtrace/kubectl-podtrace/pkg/version.Version=v0.1.0
var (
	Version = "dev"
	Commit  = "unknown"
	// AgentImage is the default agent image the plugin starts.
	AgentImage = "ghcr.io/podtrace/podtrace-agent:latest"
)

// GoVersion is the Go toolchain that built the binary.
func GoVersion() string { return runtime.Version() }
