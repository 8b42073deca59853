# Shoal — see README.md. Every target that needs root says so.
GO        ?= go
BIN       := bin/shoal
# Beside it: the container init (runtime/init: C, no libc) and the node
# supervisor on its own (runtime/cmd/shoal-supervisor).
INIT      := bin/shoal-init
SUP       := bin/shoal-supervisor
PKGS      := ./...
# Unit and package tests; the end-to-end suite in ./test runs after them.
UNIT_PKGS := $(shell $(GO) list ./... 2>/dev/null | grep -v '/test$$' | grep -v '/test/')

# The release the binary reports (`shoal --version`, `node ls`): the
# nearest tag and commit, "dev" outside a git checkout. `make VERSION=v1.2.3`.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/shoal-org/shoal/node.Version=$(VERSION)
DIST      := dist

.PHONY: all build deps test unit e2e bench soak run stop vet fmt clean deb docs upgrade-test

all: build

# The binary is static (CGO_ENABLED=0): one file runs as the CLI, the agent
# and the node's container supervisor, on any Debian-like host. Beside it,
# shoal-init, every container's PID 1, and shoal-supervisor, the supervisor
# without the agent's packages (2 MiB less; the agent looks for both next to
# its executable, then in /usr/lib/shoal: runtime/README.md).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/shoal
	CGO_ENABLED=0 $(GO) build -trimpath -o $(SUP) ./runtime/cmd/shoal-supervisor
	sh runtime/init/build.sh $(INIT)

# The Debian package (dist/shoal_<version>_<arch>.deb; never committed):
# binary, systemd unit, /etc/shoal/agent.yaml, man page, completions.
deb: build
	bash scripts/build-deb.sh $(BIN) $(VERSION) $(DIST)

# The CLI reference (docs/cli.md) and man page (docs/shoal.1) are generated
# from the command tree; a unit test fails when they are stale.
docs:
	$(GO) test -count=1 -run '^TestCLIDocsCurrent$$' ./cmd/shoal -update-docs

# Rolling upgrade from an older commit (UPGRADE_FROM, default HEAD~1) to
# this tree, in the netns harness (root). See docs/upgrades.md.
UPGRADE_FROM ?= HEAD~1
upgrade-test: build
	SHOAL_BIN=$(CURDIR)/$(BIN) SHOAL_UPGRADE_FROM=$(UPGRADE_FROM) $(GO) test -count=1 -timeout 30m -run '^TestRollingUpgrade' -v ./test/

deps:
	bash scripts/deps.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet $(PKGS)
	@t=$$(mktemp -d) && cp go.mod go.sum $$t/ && $(GO) mod tidy && \
	  if ! cmp -s go.mod $$t/go.mod || ! cmp -s go.sum $$t/go.sum; then \
	    diff -u $$t/go.mod go.mod; cp $$t/go.mod $$t/go.sum .; echo "go mod tidy is not a no-op"; exit 1; fi; rm -rf $$t

unit: build
	$(GO) test -race -count=1 -timeout 20m $(UNIT_PKGS)

e2e: build
	SHOAL_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 45m ./test/...

test: deps vet unit e2e

# Figures, not assertions. The pure scheduler is cheap enough to repeat; the
# runtime and cluster benchmarks repeat their measurements internally (the
# cluster soak lasts SHOAL_SOAK, 10m by default).
bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime 5x ./node/scheduler/
	$(GO) test -run '^$$' -bench . -benchtime 1x ./runtime/...
	$(GO) test -run '^$$' -bench . -benchtime 100x ./lb/
	SHOAL_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/...

# Chaos soak and the long linearizability run, not part of `make test`:
# SHOAL_SOAK (default 10m) of faults on 5 nodes each (test/soak_test.go,
# test/lin_e2e_test.go). Prints figures; fails on any invariant violation.
SHOAL_SOAK ?= 10m
soak: deps build
	SHOAL_BIN=$(CURDIR)/$(BIN) SHOAL_SOAK=$(SHOAL_SOAK) $(GO) test -count=1 -v -timeout 90m -run '^TestSoak$$' ./test/
	SHOAL_BIN=$(CURDIR)/$(BIN) SHOAL_LIN_DURATION=$(SHOAL_SOAK) SHOAL_LIN_NODES=5 $(GO) test -count=1 -v -timeout 90m -run '^TestLinearizability$$' ./test/

run: deps build
	bash scripts/run-cluster.sh

stop:
	bash scripts/stop-cluster.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean: stop
	rm -rf bin .run $(DIST)
