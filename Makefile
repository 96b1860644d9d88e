# jevm: `make run` sets everything up and starts the daemon; `make test`
# sets everything up and runs the tests. A fresh Debian 12 machine needs
# nothing else: missing Debian packages are installed with apt, and the
# guest kernel is Debian's linux-image-*-amd64, unpacked with dpkg -x into
# build/guest (never installed on the host).

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin
BUILD := build
GUEST := $(BUILD)/guest

# Debian packages the engine, its tests and its demo use.
# docker-compose is compose v1 (1.29, Python), which the integration tests
# run next to compose v2 (below).
APT_PACKAGES := qemu-system-x86 qemu-utils e2fsprogs docker-registry busybox-static \
	debootstrap iproute2 iptables kmod ca-certificates docker-compose

# The guest kernel: the newest 6.1 generic kernel the mirror has (the
# template key includes its hash, so an update rebuilds the templates).
KERNEL_PKG_PATTERN := ^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$$

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=0.1.0+$(VERSION) -X main.gitCommit=$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

# Compose v2 for the integration tests: the compose CLI built from the Go
# module proxy at this pinned version, once per machine, into a cache
# outside the work tree (minutes the first time, nothing after), and
# given to the tests' docker CLI as its compose plugin (`docker compose`).
COMPOSE_MODULE := github.com/docker/compose/v5
COMPOSE_VERSION := v5.6.0
JEVM_CACHE ?= /var/cache/jevm
COMPOSE_BIN := $(JEVM_CACHE)/compose/$(COMPOSE_VERSION)/docker-compose

# Test timeouts keep CI (90 min) safe; the suite targets < 25 min.
INTEGRATION_TIMEOUT ?= 25m

# `make install`: PREFIX and DESTDIR as users of Makefiles expect. jevmd
# finds its guest (kernel, modules, agent) in BINDIR/../lib/jevm, so an
# install under any PREFIX or DESTDIR runs without flags.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR := $(PREFIX)/bin
JEVMLIBDIR := $(PREFIX)/lib/jevm
# Where the docker CLI looks for plugins (docker jevm).
CLIPLUGINDIR := $(PREFIX)/lib/docker/cli-plugins
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system

.PHONY: all deps guest build images compose compose-path run test unit integration vet fmt fuzz bench bench-swarm bench-checkpoint bench-migrate soak conformance clean install uninstall

all: build

# Redone when the Makefile changes (a package added to APT_PACKAGES); a
# run that finds everything installed takes a second.
deps: $(BUILD)/.deps
$(BUILD)/.deps: Makefile
	@mkdir -p $(BUILD)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(GO) mod download
	@touch $@

guest: $(GUEST)/.stamp
$(GUEST)/.stamp: | $(BUILD)/.deps
	@set -e; pkg=$$(apt-cache search --names-only '$(KERNEL_PKG_PATTERN)' | awk '{print $$1}' | sort -V | tail -1); \
	if [ -z "$$pkg" ]; then apt-get update -qq; pkg=$$(apt-cache search --names-only '$(KERNEL_PKG_PATTERN)' | awk '{print $$1}' | sort -V | tail -1); fi; \
	[ -n "$$pkg" ] || { echo "no linux-image-6.1.0-*-amd64-unsigned package found" >&2; exit 1; }; \
	echo "guest kernel: $$pkg"; \
	tmp=$$(mktemp -d); chmod 755 $$tmp; \
	(cd $$tmp && apt-get download -qq $$pkg 2>&1 | grep -v '^W: Download is performed unsandboxed' || true); \
	dpkg -x $$tmp/*.deb $$tmp/root; \
	rel=$$(ls $$tmp/root/lib/modules); \
	rm -rf $(GUEST); mkdir -p $(GUEST)/lib/modules; \
	cp $$tmp/root/boot/vmlinuz-$$rel $(GUEST)/vmlinuz; \
	cp $$tmp/root/boot/config-$$rel $(GUEST)/; \
	cp -a $$tmp/root/lib/modules/$$rel $(GUEST)/lib/modules/; \
	echo $$rel > $(GUEST)/release; \
	rm -rf $$tmp; touch $@

build: $(BUILD)/.deps
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/jevmd ./cmd/jevmd
	$(GO) build -ldflags "-X main.version=0.1.0+$(VERSION)" -o $(BIN)/docker-jevm ./cmd/docker-jevm
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/jevm-agent ./cmd/jevm-agent
	$(GO) build -o $(BIN)/jevm-testimages ./hack/testimages/cmd/jevm-testimages

images: build
	$(BIN)/jevm-testimages build

compose: $(COMPOSE_BIN)
compose-path:
	@echo $(COMPOSE_BIN)
$(COMPOSE_BIN): | $(BUILD)/.deps
	GO="$(GO)" hack/build-compose.sh $(COMPOSE_MODULE) $(COMPOSE_VERSION) $@

# The demo: a local registry holding the test images as a Docker Hub mirror,
# and jevmd in the foreground on unix:///run/jevm/docker.sock.
run: deps guest build images
	@hack/run.sh

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit: deps
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /integration$$)

# The suite also checks an installed jevm: `make install` into a DESTDIR
# (integration/install_test.go), then `make uninstall` from it.
INSTALL_TEST_DESTDIR := $(CURDIR)/$(BUILD)/destdir
integration: deps guest build images compose
	rm -rf $(INSTALL_TEST_DESTDIR)
	$(MAKE) --no-print-directory install DESTDIR=$(INSTALL_TEST_DESTDIR)
	JEVM_BIN=$(CURDIR)/$(BIN) JEVM_GUEST=$(CURDIR)/$(GUEST) JEVM_DESTDIR=$(INSTALL_TEST_DESTDIR) JEVM_COMPOSE=$(COMPOSE_BIN) \
		$(GO) tool gotestsum --format standard-quiet --jsonfile $(BUILD)/integration.json -- -count=1 -p 1 -timeout $(INTEGRATION_TIMEOUT) ./integration/
	@echo "integration tests of 20 s or more (the suite must stay under 30 minutes):"
	@$(GO) tool gotestsum tool slowest --jsonfile $(BUILD)/integration.json --threshold 20s
	$(MAKE) --no-print-directory uninstall DESTDIR=$(INSTALL_TEST_DESTDIR)
	@left=$$(cd $(INSTALL_TEST_DESTDIR) && find . -type f | sort); \
	if [ "$$left" != "./etc/jevm/daemon.json" ]; then echo "make uninstall left: $$left" >&2; exit 1; fi

test: deps guest build images compose fmt vet unit integration

# Go fuzz targets of what jevmd reads from clients, guests and registries
# (docs/RELIABILITY.md), each run for FUZZTIME with one worker (the machines
# are small). Not part of `make test`: `make unit` already runs every
# target on its seeds (f.Add and testdata/fuzz). New inputs found are kept
# in Go's fuzz cache ($(GO) env GOCACHE)/fuzz; a failing one is written
# to the package's testdata/fuzz/FuzzName/, to commit as a regression seed.
FUZZTIME ?= 10s
FUZZ_TARGETS ?= \
	./api:FuzzContainerCreate ./api:FuzzListFilters ./api:FuzzPathStatHeader \
	./internal/filterutil:FuzzMatchLabels ./internal/filterutil:FuzzParseTime \
	./vmbackend/agentproto:FuzzReadFrame ./vmbackend/agentproto:FuzzFrameRoundTrip \
	./vmbackend/agentclient:FuzzConnect \
	./imagestore:FuzzParseReference ./imagestore:FuzzApplyLayer ./imagestore:FuzzApplyLayerTar \
	./builder:FuzzExtractContext
fuzz: deps
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s -parallel 1 $$pkg 2>&1 | \
			grep -v 'level=info' | tail -n 3; \
		test $${PIPESTATUS[0]} -eq 0; \
	done

# Side by side with dockerd+runc, dockerd+runsc and podman (issue 7):
# installs the reference engines if missing, runs them only for the run,
# writes docs/BENCHMARKS.md's section and docs/bench/. jevm alone: bench/run.sh.
bench: deps guest build images
	bench/compare.sh

# Swarm over three hosts in network namespaces, jevm against dockerd (issue 17).
bench-swarm: deps guest build images
	bench/swarm.sh

# Checkpoint, restore and fork times against memory use (issue 18).
bench-checkpoint: deps guest build images
	bench/checkpoint.sh

# Live migration between two hosts in network namespaces (issue 18).
bench-migrate: deps guest build images
	bench/migrate.sh

# Soak (docs/RELIABILITY.md): SOAK_RUNS `docker run --rm` and SOAK_CYCLES
# create/start/exec/stop/rm cycles on a private jevmd; fails if anything
# is left behind or the daemon's descriptors, goroutines or RSS grew.
# Not part of `make test` (about 40 minutes under TCG).
SOAK_RUNS ?= 1000
SOAK_CYCLES ?= 200
soak: deps guest build images
	SOAK_RUNS=$(SOAK_RUNS) SOAK_CYCLES=$(SOAK_CYCLES) hack/soak.sh

# moby's own integration suite (container, image, network, volume, system,
# build, plugin) against a private jevmd and a private Debian dockerd, the
# same test binaries for both (docs/CONFORMANCE.md). Not part of `make test`.
# MOBY_SRC: a moby source tree at MOBY_VERSION (it is built, never copied in).
MOBY_SRC ?=
MOBY_VERSION ?= v28.3.3
CONFORMANCE_PKGS ?= container image network volume system build plugin/...
CONFORMANCE_RUN ?=
CONFORMANCE_TIMEOUT ?= 20m
CONFORMANCE_ENGINES ?= jevm dockerd
ifneq ($(filter conformance,$(MAKECMDGOALS)),)
ifeq ($(strip $(MOBY_SRC)),)
$(error MOBY_SRC is not set: make conformance MOBY_SRC=/path/to/moby at $(MOBY_VERSION), e.g. from `git -C MOBY.git worktree add /tmp/moby-$(MOBY_VERSION) $(MOBY_VERSION)` (see docs/CONFORMANCE.md))
endif
endif
conformance: deps guest build images
	MOBY_SRC="$(MOBY_SRC)" MOBY_VERSION="$(MOBY_VERSION)" CONFORMANCE_PKGS="$(CONFORMANCE_PKGS)" \
		CONFORMANCE_RUN="$(CONFORMANCE_RUN)" CONFORMANCE_TIMEOUT="$(CONFORMANCE_TIMEOUT)" \
		CONFORMANCE_ENGINES="$(CONFORMANCE_ENGINES)" hack/conformance/run.sh

clean:
	rm -rf $(BIN) $(BUILD)

# The guest directory is laid out as build/guest is (internal/guestassets):
# vmlinuz, release, lib/modules/RELEASE, plus the agent. The configuration
# file is written only if there is none; systemd units as dockerd ships
# them (jevm.service started by jevm.socket, -H fd://).
install: build guest
	@set -e; rel=$$(cat $(GUEST)/release); \
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(JEVMLIBDIR) $(DESTDIR)$(CLIPLUGINDIR) $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSCONFDIR)/jevm; \
	install -m 0755 $(BIN)/jevmd $(DESTDIR)$(BINDIR)/jevmd; \
	install -m 0755 $(BIN)/docker-jevm $(DESTDIR)$(CLIPLUGINDIR)/docker-jevm; \
	install -m 0755 $(BIN)/jevm-agent $(DESTDIR)$(JEVMLIBDIR)/jevm-agent; \
	install -m 0644 $(GUEST)/vmlinuz $(GUEST)/release $(DESTDIR)$(JEVMLIBDIR)/; \
	rm -rf $(DESTDIR)$(JEVMLIBDIR)/lib; install -d $(DESTDIR)$(JEVMLIBDIR)/lib/modules; \
	cp -a $(GUEST)/lib/modules/$$rel $(DESTDIR)$(JEVMLIBDIR)/lib/modules/; \
	for u in jevm.service jevm.socket; do \
		sed 's|@BINDIR@|$(BINDIR)|g' contrib/systemd/$$u > $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; \
	done; \
	if [ -e $(DESTDIR)$(SYSCONFDIR)/jevm/daemon.json ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/jevm/daemon.json"; \
	else install -m 0644 contrib/daemon.json $(DESTDIR)$(SYSCONFDIR)/jevm/daemon.json; fi; \
	if [ -z "$(DESTDIR)" ] && ! getent group docker >/dev/null; then groupadd --system docker; fi; \
	if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	echo "installed jevmd in $(DESTDIR)$(BINDIR), its guest (kernel $$rel) in $(DESTDIR)$(JEVMLIBDIR)"

# Removes what install put; keeps $(SYSCONFDIR)/jevm/daemon.json (the
# admin's) and the data root, as removing a package without purging does.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/jevmd $(DESTDIR)$(CLIPLUGINDIR)/docker-jevm $(DESTDIR)$(SYSTEMDUNITDIR)/jevm.service $(DESTDIR)$(SYSTEMDUNITDIR)/jevm.socket
	rm -rf $(DESTDIR)$(JEVMLIBDIR)
