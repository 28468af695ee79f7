# kubectl-podtrace — build, test, demo. Kernel tests need root.
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
PKG     := github.com/podtrace/kubectl-podtrace
LDFLAGS := -s -w -X $(PKG)/pkg/version.Version=$(VERSION) -X $(PKG)/pkg/version.Commit=$(COMMIT)

.PHONY: all build agent plugin test demo lint vet fmt bench clean
all: build

build: plugin agent

plugin:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kubectl-podtrace ./cmd/kubectl-podtrace

agent:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/podtrace-agent ./cmd/podtrace-agent

# The main job on the built-in default: build, then trace across the local lab (root).
demo: build
	./$(BIN)/kubectl-podtrace lab

# Unit tests and the real-kernel tests (network namespaces, veth, bridges, AF_PACKET).
# Run as root: kernel tests fail rather than skip when PODTRACE_REQUIRE_ROOT=1.
test: lint build
	PODTRACE_REQUIRE_ROOT=1 PODTRACE_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -p 1 -timeout 20m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/...

# Benchmarks: decode cost, ring read path, filter VM (figures, not assertions).
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/decode/ ./pkg/capture/ ./pkg/filter/

clean:
	rm -rf $(BIN) dist

-include test/e2e/e2e.mk
