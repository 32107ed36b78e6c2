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

.PHONY: build deps bpf bpffs test demo demo-shell clean

# Installs the packages a fresh Debian machine lacks (needs root, as the datapath does).
deps:
	$(Q)missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "  APT  $$missing"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

bpf: $(BPF_OBJ) $(TC_OBJ)

# Pins need a BPF filesystem; some hosts do not mount one at boot. Mounted once here, so
# tests running in parallel never race to mount it.
bpffs:
	$(Q)grep -q ' /sys/fs/bpf bpf ' /proc/mounts || mount -t bpf bpf /sys/fs/bpf

$(BPF_OBJ): bpf/veer_sock.bpf.c bpf/include/veer_maps.h | deps
	@mkdir -p $(OUT)
	@echo "  BPF  $@"
	$(Q)$(CLANG) -target bpf -O2 -g -mcpu=v3 -Wall -Werror \
		-I/usr/include/$(MULTIARCH) -Ibpf/include -c $< -o $@

# The packet path (tc): the same maps, its own object, loaded only where veerd attaches it.
$(TC_OBJ): bpf/veer_tc.bpf.c bpf/include/veer_maps.h | deps
	@mkdir -p $(OUT)
	@echo "  BPF  $@"
	$(Q)$(CLANG) -target bpf -O2 -g -mcpu=v3 -Wall -Werror \
		-I/usr/include/$(MULTIARCH) -Ibpf/include -c $< -o $@

$(PROBE): Tests/tools/veer-probe.c Tests/tools/sandbox_join.h | deps
	@mkdir -p $(OUT)
	@echo "  CC   $@"
	$(Q)$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

build: $(BPF_OBJ) $(TC_OBJ) $(PROBE) | deps
	@echo "  SWIFT build"
	$(Q)$(SWIFT) build $(SWIFT_BUILD_FLAGS) 2>&1 | grep -v "unhandled; explicitly declare" ; exit $${PIPESTATUS[0]}
	$(Q)cp $(BPF_OBJ) $(TC_OBJ) "$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)/"

# Kernel tests need root, bpffs and cgroup2; they create and remove their own sandboxes.
test: build bpffs
	@echo "  SWIFT test"
	$(Q)VEER_BPF_OBJECT=$(abspath $(BPF_OBJ)) VEER_PROBE=$(abspath $(PROBE)) \
		VEER_BIN="$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)" $(SWIFT) test $(SWIFT_BUILD_FLAGS) 2>&1 | grep -v "unhandled; explicitly declare" ; exit $${PIPESTATUS[0]}
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

# Veer vs kube-proxy (iptables, nftables) vs no load balancer, at 1 to 50,000 services, in a
# sandbox it removes (Tests/bench/run.sh). Writes docs/benchmarks.md and docs/benchmarks.png.
# Quicker: make bench BENCH_SCALES="1 1000" BENCH_ROUNDS=3
BENCH_OUT  := .build/bench
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

bench: $(BPF_OBJ) | deps
	$(Q)missing=""; for p in $(BENCH_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "  APT  $$missing"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@mkdir -p $(BENCH_OUT)
	@echo "  CC   $(BENCH_OUT)/netbench"
	$(Q)$(CC) -O2 -Wall -Wextra -Werror -pthread -o $(BENCH_OUT)/netbench Tests/bench/netbench.c
	@echo "  SWIFT build -c release --product veer-bench --product veerd"
	$(Q)$(SWIFT) build -c release --product veer-bench 2>&1 | grep -v "unhandled; explicitly declare" ; exit $${PIPESTATUS[0]}
	$(Q)$(SWIFT) build -c release --product veerd 2>&1 | grep -v "unhandled; explicitly declare" ; exit $${PIPESTATUS[0]}
	$(Q)[ -x $(BENCH_VENV)/bin/python ] || python3 -m venv $(BENCH_VENV)
	$(Q)$(BENCH_VENV)/bin/python -c 'import matplotlib' 2>/dev/null || { echo "  PIP  matplotlib"; $(BENCH_VENV)/bin/pip install -q matplotlib; }
	$(Q)VEER_BPF_OBJECT=$(abspath $(BPF_OBJ)) NETBENCH=$(abspath $(BENCH_OUT)/netbench) \
		VEER_BENCH="$$($(SWIFT) build -c release --show-bin-path)/veer-bench" \
		VEERD="$$($(SWIFT) build -c release --show-bin-path)/veerd" \
		BENCH_PYTHON=$(abspath $(BENCH_VENV)/bin/python) BENCH_OUT=$(abspath $(BENCH_OUT)) \
		BENCH_DOC=$(abspath docs/benchmarks.md) Tests/bench/run.sh
