# kubectl-podtrace — build, test, demo. Kernel tests need root.
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || echo v0.1.0-dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
PKG     := github.com/podtrace/kubectl-podtrace
AGENT_IMAGE ?= ghcr.io/podtrace/podtrace-agent:$(VERSION)
# The agent does not record the agent image: a release pins the plugin's default image to
# the digest of an image that holds the agent (make release), which must not depend on it.
AGENT_LDFLAGS := -s -w -X $(PKG)/pkg/version.Version=$(VERSION) -X $(PKG)/pkg/version.Commit=$(COMMIT)
LDFLAGS := $(AGENT_LDFLAGS) -X $(PKG)/pkg/version.AgentImage=$(AGENT_IMAGE)
# Release platforms (make dist) and agent image platforms (make image).
PLATFORMS       ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
AGENT_PLATFORMS ?= linux/amd64 linux/arm64

# Recipes use bash: the test pipelines need pipefail.
SHELL := /bin/bash

.PHONY: all build agent plugin test race fuzz demo lint vet fmt bench measure clean dist image release
all: build

build: plugin agent

plugin:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kubectl-podtrace ./cmd/kubectl-podtrace

agent:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(AGENT_LDFLAGS)' -o $(BIN)/podtrace-agent ./cmd/podtrace-agent

# The main job on the built-in default: build, then trace across the local lab (root).
demo: build
	./$(BIN)/kubectl-podtrace lab

# Unit tests and the real-kernel tests (network namespaces, veth, bridges, AF_PACKET),
# then the concurrent packages again under the race detector (make race).
# Run as root: with PODTRACE_REQUIRE_ROOT=1 a test that lacks a privilege or a tool
# fails rather than skips, and hack/testsummary fails the run on any skipped test
# that hack/testsummary/allowed-skips.txt does not name (the list is empty).
# TESTFLAGS=-count=3 runs every test three times.
TESTFLAGS ?= -count=1
TESTENV   := PODTRACE_REQUIRE_ROOT=1
SUMMARY   := $(GO) run ./hack/testsummary -allow hack/testsummary/allowed-skips.txt
test: lint build
	set -o pipefail; $(TESTENV) PODTRACE_BIN=$(CURDIR)/$(BIN) $(GO) test -json $(TESTFLAGS) -p 1 -timeout 40m ./... | $(SUMMARY)
	$(MAKE) --no-print-directory race
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME) FUZZMINIMIZE=$(TEST_FUZZMINIMIZE)

# Every fuzz target, one after the other, FUZZTIME each (a duration, or Nx for N
# inputs), FUZZPARALLEL workers. make test runs each briefly (TEST_FUZZTIME); a crash
# fails the run and leaves its input in the package's testdata/fuzz/TARGET/, where it
# stays as a regression seed that every go test runs. Minimizing an input that found
# new code is bounded (FUZZMINIMIZE; Go's default, a minute, stalls a loaded machine).
FUZZTIME       ?= 30s
FUZZPARALLEL   ?= 1
FUZZMINIMIZE   ?= 5s
# make test counts inputs, not seconds: with a duration, Go before 1.27 may fail a target
# with "context deadline exceeded" when a loaded machine keeps a worker busy as the time
# runs out (go.dev/issue/75804), with no input at fault.
TEST_FUZZTIME     ?= 500x
TEST_FUZZMINIMIZE ?= 50x
FUZZ_TARGETS   := ./pkg/decode/:FuzzDecode ./pkg/filter/:FuzzCompile ./pkg/render/:FuzzStreamTrace \
	./pkg/render/:FuzzReplay ./pkg/pcapng/:FuzzWriteReadBack ./pkg/kube/ref/:FuzzParse
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; echo "fuzz $$fn ($$pkg) for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) -parallel $(FUZZPARALLEL) -timeout 0 $$pkg; \
	done

# The race detector on the packages that run goroutines: the session and the local
# launcher (driven in-process by the cli kernel tests), the agent and the plugin (-race
# builds of the binaries the agent and cli tests start), the stream reader, the capture ring, the
# netlink watcher. Needs cgo (gcc).
RACE_PKGS ?= ./pkg/session/ ./pkg/wire/ ./pkg/capture/ ./pkg/netsnap/ ./cmd/podtrace-agent/ ./pkg/cli/
race:
	CGO_ENABLED=1 $(GO) build -race -o $(BIN)/race/podtrace-agent ./cmd/podtrace-agent
	CGO_ENABLED=1 $(GO) build -race -o $(BIN)/race/kubectl-podtrace ./cmd/kubectl-podtrace
	set -o pipefail; $(TESTENV) PODTRACE_BIN=$(CURDIR)/$(BIN)/race CGO_ENABLED=1 $(GO) test -race -json $(TESTFLAGS) -p 1 -timeout 40m $(RACE_PKGS) | $(SUMMARY)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/...
	@# the agent never imports Kubernetes or the CLI; the trace engine and render no launcher, lab or Kubernetes
	GO=$(GO) $(GO) run ./hack/depcheck
	@# the plugin is released for macOS and Windows too: it must keep compiling off Linux
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/kubectl-podtrace/

# Benchmarks: decode cost, ring read path, filter VM (figures, not assertions).
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/decode/ ./pkg/capture/ ./pkg/filter/

# Release archives (.tar.gz, .zip on Windows) with LICENSE, the deploy/ archive for the release
# (podtrace-deploy_VERSION.tar.gz), checksums.txt and the krew manifest rendered with their
# checksums, in dist/. VERSION must be vX.Y.Z[-pre].
# A release: the agent image first, then the archives of a plugin whose default agent image
# is pinned to that image's digest (AGENT_IMAGE@sha256:…). Push bin/podtrace-agent-image.tar
# as is (e.g. crane push --index): the digest is the same in the registry. VERSION=vX.Y.Z.
release: image
	$(MAKE) --no-print-directory dist AGENT_IMAGE='$(AGENT_IMAGE)@'$$(cat $(BIN)/podtrace-agent-image.digest)

dist:
	$(GO) run ./hack/dist -out dist -version '$(VERSION)' -commit '$(COMMIT)' -agent-image '$(AGENT_IMAGE)' \
	  -plugin '$(PLATFORMS)' -agent '$(AGENT_PLATFORMS)' -epoch $$(git log -1 --format=%ct 2>/dev/null || echo 0)

# The agent image without Docker: $(BIN)/podtrace-agent-image.tar, an OCI image index
# (multi-arch; ctr import --all-platforms, skopeo, crane, docker load on Docker >= 25),
# and $(BIN)/podtrace-agent-image-<arch>.tar, docker-archive (docker load, ctr import).
image:
	@set -e; for p in $(AGENT_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; d=$(BIN)/image/$${os}_$${arch}; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(AGENT_LDFLAGS)' -o $$d/podtrace-agent ./cmd/podtrace-agent; \
	done
	$(GO) run ./images/mkimage -ref '$(AGENT_IMAGE)' -entrypoint /podtrace-agent \
	  -platforms '$(AGENT_PLATFORMS)' -oci $(BIN)/podtrace-agent-image.tar -docker '$(BIN)/podtrace-agent-image-{arch}.tar' \
	  -digest $(BIN)/podtrace-agent-image.digest \
	  '$(BIN)/image/{os}_{arch}/podtrace-agent:/podtrace-agent'

# Flood figures: agent vs tcpdump on one veth, CPU and RSS, lab time to verdict; what one
# probe costs beside a busy flow; what --kernel-drops costs while a flow is dropped (root).
measure: build
	PODTRACE_BIN=$(CURDIR)/$(BIN) ./bench/agent-flood.sh
	PODTRACE_BIN=$(CURDIR)/$(BIN) ./bench/busy-trace.sh
	PODTRACE_BIN=$(CURDIR)/$(BIN) ./bench/kernel-drops.sh

clean:
	rm -rf $(BIN) dist

-include test/e2e/e2e.mk
