# kubectl-podtrace — build, test, demo. Kernel tests need root.
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
PKG     := github.com/podtrace/kubectl-podtrace
LDFLAGS := -s -w -X $(PKG)/pkg/version.Version=$(VERSION) -X $(PKG)/pkg/version.Commit=$(COMMIT)

.PHONY: all build agent plugin test demo vet fmt clean
all: build

build: plugin agent

plugin:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kubectl-podtrace ./cmd/kubectl-podtrace

agent:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/podtrace-agent ./cmd/podtrace-agent

-include test/e2e/e2e.mk
