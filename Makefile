# Veer: `make demo` shows it working; `make test` proves it. Both install what they need.
SHELL := /bin/bash
.DELETE_ON_ERROR:
.DEFAULT_GOAL := build

export PATH := $(PATH):/usr/sbin:/sbin

SWIFT     ?= swift
# The Swift toolchain's clang has the BPF target; Debian's clang-14 would need -mcpu=v3 too.
CLANG     ?= $(dir $(realpath $(shell command -v $(SWIFT))))clang
CC        ?= gcc
# -target bpf does not search the multiarch dir, where <asm/types.h> lives.
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH)
OUT       := .build/veer
BPF_OBJ   := $(OUT)/veer_sock.bpf.o
TC_OBJ    := $(OUT)/veer_tc.bpf.o
PROBE     := $(OUT)/veer-probe
APT_PKGS  := libnftables1 libbpf-dev libelf-dev zlib1g-dev bpftool iproute2 pkg-config gcc dnsutils curl dnsmasq-base prometheus
SWIFT_BUILD_FLAGS ?=

ifeq ($(V),1)
Q :=
else
Q := @
endif

.PHONY: build deps bpf bpffs test demo demo-shell clean version-header

# Installs whichever of the Debian packages $(1) are missing: one apt-get update, one install.
# Waits for the dpkg lock rather than failing when another job holds it.
define apt_install
	$(Q)missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "  APT  $$missing"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			-o DPkg::Lock::Timeout=600 --no-install-recommends $$missing >/dev/null; \
	fi
endef

# Installs the packages a fresh Debian machine lacks (needs root, as the datapath does).
deps:
	$(call apt_install,$(APT_PKGS))

# `veerd --version` and `veerctl --version`: SwiftPM cannot pass string defines, so this writes
# a header (gitignored) that only Sources/CVeerVersion/version.c includes; rewritten only when
# it changes, so an unchanged revision rebuilds nothing. Without it the build says "dev".
VERSION      ?= 0.1.0
GIT_REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)$(shell git rev-parse HEAD >/dev/null 2>&1 && ! git diff --quiet HEAD 2>/dev/null && echo -dirty)
VERSION_H    := Sources/CVeerVersion/veer_version.h
version-header:
	$(Q)printf '#define VEER_VERSION "%s"\n#define VEER_GIT_REVISION "%s"\n' '$(VERSION)' '$(GIT_REVISION)' > $(VERSION_H).tmp
	$(Q)if cmp -s $(VERSION_H).tmp $(VERSION_H); then rm $(VERSION_H).tmp; else mv $(VERSION_H).tmp $(VERSION_H); fi

bpf: $(BPF_OBJ) $(TC_OBJ)

# Pins need a BPF filesystem; some hosts do not mount one at boot. Mounted once here, so
# tests running in parallel never race to mount it.
bpffs:
	$(Q)grep -q ' /sys/fs/bpf bpf ' /proc/mounts || mount -t bpf bpf /sys/fs/bpf

$(BPF_OBJ): bpf/veer_sock.bpf.c bpf/veer_shared_maps.h bpf/include/veer_maps.h | deps
	@mkdir -p $(OUT)
	@echo "  BPF  $@"
	$(Q)$(CLANG) -target bpf -O2 -g -mcpu=v3 -Wall -Werror \
		-I/usr/include/$(MULTIARCH) -Ibpf/include -c $< -o $@

# The packet path (tc): the same maps, its own object, loaded only where veerd attaches it.
$(TC_OBJ): bpf/veer_tc.bpf.c bpf/veer_shared_maps.h bpf/include/veer_maps.h | deps
	@mkdir -p $(OUT)
	@echo "  BPF  $@"
	$(Q)$(CLANG) -target bpf -O2 -g -mcpu=v3 -Wall -Werror \
		-I/usr/include/$(MULTIARCH) -Ibpf/include -c $< -o $@

$(PROBE): Tests/tools/veer-probe.c Tests/tools/sandbox_join.h | deps
	@mkdir -p $(OUT)
	@echo "  CC   $@"
	$(Q)$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

build: $(BPF_OBJ) $(TC_OBJ) $(PROBE) version-header | deps
	@echo "  SWIFT build"
	$(Q)$(SWIFT) build $(SWIFT_BUILD_FLAGS) 2>&1 | grep -v "unhandled; explicitly declare" ; exit $${PIPESTATUS[0]}
	$(Q)cp $(BPF_OBJ) $(TC_OBJ) "$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)/"

# Kernel tests need root, bpffs and cgroup2; they create and remove their own sandboxes.
# The image tests run `make image`'s archive with podman; the deploy tests need kubernetes-validate.
# The API-source suites (VeerKubeTests) run on their own first: they wait on a fake API server
# with deadlines, and beside the kernel, image and deploy tests (which block the test runner's
# threads, one per core) a 2-core machine starved them past those deadlines.
TEST_ENV = VEER_BPF_OBJECT=$(abspath $(BPF_OBJ)) VEER_PROBE=$(abspath $(PROBE)) \
	VEER_IMAGE_ARCHIVE=$(abspath $(IMAGE_ARCHIVE)) VEER_IMAGE='$(IMAGE)' VEER_GIT_REVISION='$(GIT_REVISION)' \
	VEER_KUBE_VALIDATE=$(abspath $(DEPLOY_VENV))/bin/kubernetes-validate \
	VEER_BIN="$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)"
test: build bpffs image deploy-tools
	@echo "  SWIFT test VeerKubeTests"
	$(Q)$(TEST_ENV) $(SWIFT) test $(SWIFT_BUILD_FLAGS) --filter VeerKubeTests 2>&1 | grep -v "unhandled; explicitly declare" ; exit $${PIPESTATUS[0]}
	@echo "  SWIFT test (the rest)"
	$(Q)$(TEST_ENV) $(SWIFT) test $(SWIFT_BUILD_FLAGS) --skip-build --skip VeerKubeTests 2>&1 | grep -v "unhandled; explicitly declare" ; exit $${PIPESTATUS[0]}
	$(Q)$(MAKE) --no-print-directory bench-smoke

# The watch-event fuzzer, longer than `make test`'s bounded run: make fuzz FUZZ_SECONDS=3600
# (VEER_FUZZ_SEED=N replays one seed). No privileges needed.
FUZZ_SECONDS ?= 600
.PHONY: fuzz
fuzz:
	$(Q)VEER_FUZZ_SECONDS=$(FUZZ_SECONDS) $(SWIFT) test $(SWIFT_BUILD_FLAGS) --filter WatchEventFuzzTests 2>&1 | grep -v "unhandled; explicitly declare" ; exit $${PIPESTATUS[0]}

demo: build bpffs
	$(Q)VEER_BPF_OBJECT=$(abspath $(BPF_OBJ)) VEER_PROBE=$(abspath $(PROBE)) \
		VEER_BIN="$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)" ./examples/demo/run.sh $(DEMO_ARGS)

clean:
	rm -rf .build/veer
	$(SWIFT) package clean

# The demo's sandbox, left running for a person to explore (Ctrl-C tears it down).
demo-shell:
	$(Q)$(MAKE) --no-print-directory demo DEMO_ARGS=--keep

# Veer vs kube-proxy (iptables, nftables) vs no load balancer, at 1 to 50,000 services, for the
# node's own clients and for a client outside the node (NodePort on node A, the pod on node B), in a
# sandbox it removes (Tests/bench/run.sh). Writes docs/benchmarks.md and docs/benchmarks.png
# (BENCH_DOC=path writes elsewhere). Quicker: make bench BENCH_SCALES="1 1000" BENCH_ROUNDS=3
BENCH_OUT  := .build/bench
BENCH_DOC  ?= docs/benchmarks.md
BENCH_VENV := $(BENCH_OUT)/venv
BENCH_APT  := iptables nftables python3 python3-venv
.PHONY: bench bench-smoke
# A tiny run of the harness (Tests/bench/smoke.sh), part of `make test`: it checks the harness
# works and cleans up, never timing; it writes to a temporary directory, not docs/.
bench-smoke: build bpffs
	@mkdir -p $(BENCH_OUT)
	$(Q)$(CC) -O2 -Wall -Wextra -Werror -pthread -o $(BENCH_OUT)/netbench Tests/bench/netbench.c
	@echo "  BENCH smoke"
	$(Q)bin="$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)"; \
		VEER_BPF_OBJECT=$(abspath $(BPF_OBJ)) NETBENCH=$(abspath $(BENCH_OUT)/netbench) \
		VEER_BENCH="$$bin/veer-bench" VEERD="$$bin/veerd" Tests/bench/smoke.sh

bench: $(BPF_OBJ) $(TC_OBJ) | deps
	$(call apt_install,$(BENCH_APT))
	@mkdir -p $(BENCH_OUT)
	@echo "  CC   $(BENCH_OUT)/netbench"
	$(Q)$(CC) -O2 -Wall -Wextra -Werror -pthread -o $(BENCH_OUT)/netbench Tests/bench/netbench.c
	@echo "  SWIFT build $(RELEASE_FLAGS) --product veer-bench --product veerd"
	$(Q)$(SWIFT) build $(RELEASE_FLAGS) --product veer-bench 2>&1 | grep -v "unhandled; explicitly declare" ; exit $${PIPESTATUS[0]}
	$(Q)$(SWIFT) build $(RELEASE_FLAGS) --product veerd 2>&1 | grep -v "unhandled; explicitly declare" ; exit $${PIPESTATUS[0]}
	$(Q)[ -x $(BENCH_VENV)/bin/python ] || python3 -m venv $(BENCH_VENV)
	$(Q)$(BENCH_VENV)/bin/python -c 'import matplotlib' 2>/dev/null || { echo "  PIP  matplotlib"; $(BENCH_VENV)/bin/pip install -q matplotlib; }
	$(Q)VEER_BPF_OBJECT=$(abspath $(BPF_OBJ)) NETBENCH=$(abspath $(BENCH_OUT)/netbench) \
		VEER_BENCH="$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/veer-bench" \
		VEERD="$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/veerd" \
		BENCH_PYTHON=$(abspath $(BENCH_VENV)/bin/python) BENCH_OUT=$(abspath $(BENCH_OUT)) \
		BENCH_DOC=$(abspath $(BENCH_DOC)) Tests/bench/run.sh

# ---- Shipping: the image, the deploy check tools, make install ----------------------------------

# veerd and veerctl for hosts and images: optimised, the Swift runtime linked in. One release
# build serves `make image` and `make install`, and `make bench` measures this same build (the
# runtime linked in, veerd's RSS is 7 MB less than with the shared libraries).
RELEASE_FLAGS := -c release --static-swift-stdlib
.PHONY: release
release: $(BPF_OBJ) $(TC_OBJ) version-header | deps
	@echo "  SWIFT build $(RELEASE_FLAGS) --product veerd --product veerctl"
	$(Q)for p in veerd veerctl; do \
		$(SWIFT) build $(RELEASE_FLAGS) --product $$p 2>&1 | grep -v "unhandled; explicitly declare"; \
		[ $${PIPESTATUS[0]} = 0 ] || exit 1; \
	done

# make image: an OCI archive of Veer (deploy/image/build.sh), from scratch, pulling nothing.
# Load it with `podman load -i`, `docker load -i` or `ctr -n k8s.io images import`.
IMAGE_NAME    ?= localhost/veer
IMAGE         := $(IMAGE_NAME):$(VERSION)
IMAGE_SOURCE  ?= https://github.com/veer-lb/veer
IMAGE_ARCHIVE := .build/veer-image.oci.tar
IMAGE_APT     := buildah skopeo podman runc busybox-static binutils jq
.PHONY: image image-deps
image-deps:
	$(call apt_install,$(IMAGE_APT))

image: release | image-deps
	$(Q)VEER_RELEASE_BIN="$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)" \
		VEER_BPF_OBJECT=$(abspath $(BPF_OBJ)) VEER_TC_OBJECT=$(abspath $(TC_OBJ)) VEER_VERSION='$(VERSION)' VEER_GIT_REVISION='$(GIT_REVISION)' \
		VEER_IMAGE='$(IMAGE)' VEER_IMAGE_SOURCE='$(IMAGE_SOURCE)' VEER_IMAGE_ARCHIVE=$(abspath $(IMAGE_ARCHIVE)) \
		deploy/image/build.sh

# The deploy tests validate the rendered manifests offline against Kubernetes' OpenAPI schemas
# (kubernetes-validate, from PyPI) and parse the dashboard's PromQL with promtool.
DEPLOY_VENV := .build/deploy-venv
.PHONY: deploy-tools
deploy-tools: | deps
	$(call apt_install,python3 python3-venv)
	$(Q)[ -x $(DEPLOY_VENV)/bin/python ] || python3 -m venv $(DEPLOY_VENV)
	$(Q)[ -x $(DEPLOY_VENV)/bin/kubernetes-validate ] || { echo "  PIP  kubernetes-validate"; $(DEPLOY_VENV)/bin/pip install -q kubernetes-validate; }

# make install PREFIX=/usr/local [DESTDIR=…]: the release binaries, the BPF object where veerd
# looks for it ($(PREFIX)/lib/veer, found from $(PREFIX)/bin/veerd), shell completions for
# bash, zsh and fish and man pages (both generated by swift-argument-parser), and the systemd unit.
PREFIX     ?= /usr/local
DESTDIR    ?=
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
.PHONY: install
# The man pages first: the plugin builds every product in release mode without the static Swift
# runtime, relinking veerd and veerctl, so `release` relinks them statically afterwards (link only).
install: $(BPF_OBJ) version-header | deps
	@echo "  MAN  veerd.1 veerctl.1 (swift-argument-parser's generate-manual plugin)"
	$(Q)$(SWIFT) package generate-manual >.build/generate-manual.log 2>&1 || { cat .build/generate-manual.log >&2; exit 1; }
	$(Q)$(MAKE) --no-print-directory release
	$(Q)bin="$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)"; set -e; \
	echo "  INSTALL $(DESTDIR)$(PREFIX)"; \
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/veer $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d $(DESTDIR)$(SYSTEMDDIR); \
	install -m 0755 "$$bin/veerd" "$$bin/veerctl" $(DESTDIR)$(PREFIX)/bin/; \
	install -m 0644 $(BPF_OBJ) $(DESTDIR)$(PREFIX)/lib/veer/veer_sock.bpf.o; \
	install -m 0644 $(TC_OBJ) $(DESTDIR)$(PREFIX)/lib/veer/veer_tc.bpf.o; \
	sed 's|/usr/local/bin/veerd|$(PREFIX)/bin/veerd|' deploy/veerd.service > $(DESTDIR)$(SYSTEMDDIR)/veerd.service; \
	chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/veerd.service; \
	for p in veerd veerctl; do \
		"$$bin/$$p" --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$p; \
		"$$bin/$$p" --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_$$p; \
		"$$bin/$$p" --generate-completion-script fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/$$p.fish; \
		page=$$(find .build/plugins/GenerateManual/outputs -name "$$p.1" | head -1); \
		[ -n "$$page" ] || { echo "no man page for $$p from generate-manual (.build/generate-manual.log)" >&2; exit 1; }; \
		install -m 0644 "$$page" $(DESTDIR)$(PREFIX)/share/man/man1/$$p.1; \
	done
