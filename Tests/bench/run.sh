#!/usr/bin/env bash
# make bench: Veer against kube-proxy's iptables and nftables modes and against no load
# balancer at all ("direct"), at several numbers of services, on this machine.
#
# Everything runs in a sandbox this script creates and removes, even on failure:
#   - per scale, four network namespaces veer-bench-<pid>-{direct,veer,ipt,nft}, with no
#     link to the host: lo only. 10.128.0.0/9 (the pod CIDR: every endpoint) is a local
#     route on lo, so one server per namespace on 0.0.0.0 answers for every endpoint.
#     ipt and nft route the service CIDR 10.96.0.0/12 to lo (kube-proxy's NAT happens
#     after the route lookup; Veer's never needs a route for a ClusterIP).
#   - one child cgroup <cgroup2>/veer-bench-<pid> with Veer's programs attached (pins in
#     /sys/fs/bpf/veer-bench-<pid>); only the Veer client processes join it.
#   - iptables and nft rules exist only inside ipt and nft.
#   - the external-client mode, per scale (BENCH_EXTERNAL=0 leaves it out): a bridge namespace
#     veer-bench-<pid>-xbr joins, by veths made inside these namespaces only, an outside client
#     (-xcl, 192.168.79.200), node B (-xb, .20) with the backend pod behind a veth in its own
#     namespace (-xpod: the measured service's 10 endpoint addresses, one server), and one node A
#     per load balancer: -xa-veer (.11: veerd --manifests with its packet path, tc on that
#     namespace's eth0 only, cgroup <cgroup2>/veer-bench-<pid>-ext that no process joins, pins
#     /sys/fs/bpf/veer-bench-<pid>-ext), -xa-ipt (.12) and -xa-nft (.13) with kube-proxy's rules
#     (the same files as the socket mode: they include the measured service's NodePorts). The
#     client connects to node A's address:30080; node A routes the pod CIDR to node B. "direct"
#     is the client routed to the pod through node B, with no node A and no NAT at all.
#   - the control plane (Tests/bench/agent_bench.py): per scale, namespace veer-bench-<pid>-cp
#     holding the fake API server and veerd, which attaches to <cgroup2>/veer-bench-<pid>-cp
#     with pins in /sys/fs/bpf/veer-bench-<pid>-cp (no client ever joins that cgroup).
#
# Env: VEER_BPF_OBJECT, VEER_BENCH (veer-bench binary), NETBENCH (client/server binary), VEERD (veerd binary),
#      BENCH_SCALES ("1 1000 10000 50000"), BENCH_ROUNDS (15), BENCH_MS (120 per case per round: short, so a round's cases run close in time),
#      BENCH_LOAD_TIMEOUT (90 s per rule load; BENCH_NFT_TIMEOUT 160 s for nft -f), BENCH_OUT (.build/bench), BENCH_DOC (docs/benchmarks.md),
#      BENCH_AGENT_SCALES ("10000 50000 100000x5": veerd against the fake API server, 10 endpoints per service; NxE for E
#      endpoints per service, e.g. 100000x5, issue 16's third column), BENCH_CHURN_SECONDS (10), BENCH_CHURN_RATE (100),
#      BENCH_WATCH_LIST (off: veerd lists; on: veerd --watch-list, streamed; refuse: --watch-list, the server answers 422),
#      BENCH_EXTERNAL (1: the external-client mode; needs VEERD), BENCH_STATS_ROUNDS (3: Veer's cases again with
#      the kernel's per-program run-time statistics on, after the timed rounds so they do not weigh on them)
#
# Time budget (the whole run should stay under 10 minutes, plus the external-client mode's second load
# of each kube-proxy rule file: about 3 more minutes at 10,000 services): every load runs under a timeout, and a
# kube-proxy load is not even started when the previous scale's load, scaled linearly (its real
# growth is worse), would already exceed the timeout; the skip and its reason are reported.
set -uo pipefail
export PATH=$PATH:/usr/sbin:/sbin
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/Tests/bench
: "${VEER_BPF_OBJECT:?}" "${VEER_BENCH:?}" "${NETBENCH:?}"
SCALES=${BENCH_SCALES:-"1 1000 10000 50000"}
ROUNDS=${BENCH_ROUNDS:-15}
MS=${BENCH_MS:-120}
LOAD_TIMEOUT=${BENCH_LOAD_TIMEOUT:-90}
NFT_TIMEOUT=${BENCH_NFT_TIMEOUT:-160}     # nft -f grows worse than linearly: 10,000 services took 138 s once
PLAN_TIMEOUT=${BENCH_PLAN_TIMEOUT:-60}
OUT=${BENCH_OUT:-$REPO/.build/bench}
DOC=${BENCH_DOC:-}
CHURN_SECONDS=${BENCH_CHURN_SECONDS:-10}
CHURN_RATE=${BENCH_CHURN_RATE:-100}
AGENT_SCALES=${BENCH_AGENT_SCALES-"10000 50000 100000x5"}
[ -z "$AGENT_SCALES" ] || : "${VEERD:?VEERD (veerd binary) is needed for BENCH_AGENT_SCALES}"
EXTERNAL=${BENCH_EXTERNAL:-1}
[ "$EXTERNAL" = 0 ] || : "${VEERD:?VEERD (veerd binary) is needed for the external-client mode (BENCH_EXTERNAL=0 leaves it out)}"

[ "$(id -u)" = 0 ] || { echo "bench: needs root (BPF, namespaces, cgroups)" >&2; exit 1; }
CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
[ -n "$CG2" ] || { echo "bench: no cgroup2 mount" >&2; exit 1; }
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || mount -t bpf bpf /sys/fs/bpf

TAG=veer-bench-$$
CGROUP=$CG2/$TAG
PINS=/sys/fs/bpf/$TAG
MODES="direct veer ipt nft"
SERVERS=()
AGENT_PID=
# External-client mode: namespaces (suffixes of $TAG-), addresses on the bridge.
XNS="xbr xcl xb xpod xa-veer xa-ipt xa-nft"
XNET=192.168.79
XCLIENT=$XNET.200
XNODEB=$XNET.20
declare -A XNODE=([veer]=$XNET.11 [ipt]=$XNET.12 [nft]=$XNET.13)
XVEERD_PID=
STATS_PID=
STATS_ROUNDS=${BENCH_STATS_ROUNDS:-3}
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv   # scale  case  mode  round  key=value...
LOADS=$OUT/loads.tsv       # scale  mode  status  seconds  detail
: >"$RESULTS"; : >"$LOADS"; : >"$OUT/xveer-stats.tsv"; : >"$OUT/bpf-stats.tsv"
START=$(date +%s)

log() { printf '[bench %4ss] %s\n' "$(( $(date +%s) - START ))" "$*" >&2; }

teardown_scale() {
	local pid
	for pid in "${SERVERS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
	for pid in "${SERVERS[@]}"; do wait "$pid" 2>/dev/null; done
	SERVERS=()
	[ -d "$PINS" ] && "$VEER_BENCH" uninstall "$PINS" >/dev/null 2>&1
	[ -d "$PINS" ] && rm -rf "$PINS"
	if [ -d "$CGROUP" ]; then
		local i
		for i in $(seq 50); do rmdir "$CGROUP" 2>/dev/null && break; sleep 0.1; done
	fi
	local m
	for m in $MODES; do ip netns del "$TAG-$m" 2>/dev/null; done
	teardown_external
	teardown_agent
}
teardown_external() {
	if [ -n "$XVEERD_PID" ]; then
		# TERM leaves the datapath attached (veerd's way); it all goes with the namespace below.
		kill -TERM "$XVEERD_PID" 2>/dev/null
		local i
		for i in $(seq 50); do kill -0 "$XVEERD_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$XVEERD_PID" 2>/dev/null; wait "$XVEERD_PID" 2>/dev/null; XVEERD_PID=
	fi
	[ -d "$PINS-ext" ] && "$VEER_BENCH" uninstall "$PINS-ext" >/dev/null 2>&1
	[ -d "$PINS-ext" ] && rm -rf "$PINS-ext"
	rm -rf "/run/veer$PINS-ext"
	if [ -d "$CGROUP-ext" ]; then
		local i
		for i in $(seq 50); do rmdir "$CGROUP-ext" 2>/dev/null && break; sleep 0.1; done
	fi
	# Deleting node A's namespace takes its eth0, the tc filter on it and the nft tables with it.
	local x
	for x in $XNS; do ip netns del "$TAG-$x" 2>/dev/null; done
	rm -rf "$OUT/ext-manifests"
}
teardown_agent() {
	# agent_bench.py kills veerd and the fake API server itself; this is for an interrupted run.
	if [ -n "$AGENT_PID" ]; then kill -KILL "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=; fi
	[ -d "$PINS-cp" ] && "$VEER_BENCH" uninstall "$PINS-cp" >/dev/null 2>&1
	[ -d "$PINS-cp" ] && rm -rf "$PINS-cp"
	if [ -d "$CGROUP-cp" ]; then
		local i
		for i in $(seq 50); do rmdir "$CGROUP-cp" 2>/dev/null && break; sleep 0.1; done
	fi
	ip netns del "$TAG-cp" 2>/dev/null
	rm -rf "/run/veer$PINS-cp"
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "${LOADER:-}" ] && kill -KILL "$LOADER" 2>/dev/null
	[ -n "$STATS_PID" ] && kill -TERM "$STATS_PID" 2>/dev/null
	teardown_scale
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns() { echo "/run/netns/$TAG-$1"; }

setup_scale() {
	local m
	for m in $MODES; do
		ip netns add "$TAG-$m" || return 1
		ip -n "$TAG-$m" link set lo up
		ip -n "$TAG-$m" route add local 10.128.0.0/9 dev lo
		ip -n "$TAG-$m" addr add 10.200.0.1/32 dev lo
	done
	for m in ipt nft; do ip -n "$TAG-$m" route add 10.96.0.0/12 dev lo src 10.200.0.1; done
	mkdir "$CGROUP" || return 1
	for m in $MODES; do
		# The server stays outside the cgroup: only the clients are load-balanced.
		: >"$OUT/server-$m.log"
		"$NETBENCH" --netns "$(ns "$m")" serve 8080 8081 8053 >"$OUT/server-$m.log" 2>&1 &
		SERVERS+=("$!")
		local i
		for i in $(seq 50); do grep -q ready "$OUT/server-$m.log" && break; sleep 0.1; done
		grep -q ready "$OUT/server-$m.log" || { log "server in $m did not start"; return 1; }
	done
}

xns() { echo "/run/netns/$TAG-x$1"; }
# xlink NS ADDRESS: NS's eth0, a veth whose peer is a port of the bridge (both ends made inside
# the bench's namespaces).
xlink() {
	local n=$1 addr=$2 peer=p$(( ${#XLINKS[@]} + 1 ))
	XLINKS+=("$peer")
	ip -n "$TAG-x$n" link add eth0 type veth peer name "$peer" netns "$TAG-xbr" || return 1
	ip -n "$TAG-xbr" link set "$peer" master br0 up || return 1
	ip -n "$TAG-x$n" addr add "$addr/24" dev eth0 || return 1
	ip -n "$TAG-x$n" link set eth0 up
}
setup_external() {
	local x
	XLINKS=()
	for x in $XNS; do
		ip netns add "$TAG-$x" || return 1
		ip -n "$TAG-$x" link set lo up
	done
	ip -n "$TAG-xbr" link add br0 type bridge && ip -n "$TAG-xbr" link set br0 up || return 1
	xlink cl "$XCLIENT" || return 1
	# direct: the client reaches the pod through node B, with nothing in between.
	ip -n "$TAG-xcl" route add 10.128.0.0/9 via "$XNODEB" || return 1
	xlink b "$XNODEB" || return 1
	nsenter --net="$(xns b)" sysctl -qw net.ipv4.ip_forward=1
	# The pod, as a CNI plugin makes it: its own namespace behind a veth, a link-local gateway.
	ip -n "$TAG-xb" link add pod0 type veth peer name eth0 netns "$TAG-xpod" || return 1
	ip -n "$TAG-xb" addr add 169.254.1.1/32 dev pod0 && ip -n "$TAG-xb" link set pod0 up || return 1
	ip -n "$TAG-xpod" link set eth0 up
	ip -n "$TAG-xpod" route add 169.254.1.1 dev eth0 && ip -n "$TAG-xpod" route add default via 169.254.1.1 dev eth0 || return 1
	local j
	for j in $(seq 0 9); do
		local a; a=$(python3 -c "import ipaddress; print(ipaddress.IPv4Address(0x0A800100 + $1 * 10 + $j))")
		ip -n "$TAG-xpod" addr add "$a/32" dev eth0 && ip -n "$TAG-xb" route add "$a/32" dev pod0 || return 1
	done
	local m
	for m in veer ipt nft; do
		xlink "a-$m" "${XNODE[$m]}" || return 1
		ip -n "$TAG-xa-$m" route add 10.128.0.0/9 via "$XNODEB" || return 1
		# A one-NIC node forwards out the interface the packet came in on: no ICMP redirects.
		nsenter --net="$(xns a-$m)" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0
	done
	: >"$OUT/server-xpod.log"
	"$NETBENCH" --netns "$(xns pod)" serve 8080 8081 8053 >"$OUT/server-xpod.log" 2>&1 &
	SERVERS+=("$!")
	for j in $(seq 50); do grep -q ready "$OUT/server-xpod.log" && break; sleep 0.1; done
	grep -q ready "$OUT/server-xpod.log" || { log "server in xpod did not start"; return 1; }
	mkdir "$CGROUP-ext" "$OUT/ext-manifests" || return 1
}
# load_external_veer SCALE: veerd on node A (xa-veer) with the scale's Services as manifests; done
# when its first full sync has written the maps and the packet path is on node A's eth0.
load_external_veer() {
	local scale=$1
	python3 "$HERE/gen.py" veer-ext "$scale" "$OUT/ext-manifests/bench.json" bench-node-a "${XNODE[veer]}" || return 1
	local cap=$(( scale * 11 * 5 / 4 + 4096 )) t0 t1
	t0=$(date +%s.%N)
	: >"$OUT/veerd-ext.log"
	nsenter --net="$(xns a-veer)" "$VEERD" --manifests "$OUT/ext-manifests" --node-name bench-node-a \
		--cgroup "$CGROUP-ext" --bpffs "$PINS-ext" --bpf-object "$VEER_BPF_OBJECT" \
		--metrics-address 127.0.0.1:9965 --max-service-entries "$cap" --max-backends "$cap" --max-members "$cap" \
		>"$OUT/veerd-ext.log" 2>&1 &
	XVEERD_PID=$!
	# Waits on the log, not /metrics: at 50,000 services one scrape takes longer than a poll.
	local status=timeout deadline=$(( $(date +%s) + LOAD_TIMEOUT ))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		kill -0 "$XVEERD_PID" 2>/dev/null || { status=failed; break; }
		if grep -q "full sync:" "$OUT/veerd-ext.log" && grep -q "interfaces=eth0 .*packet path attached" "$OUT/veerd-ext.log"; then
			status=ok; break
		fi
		sleep 0.1
	done
	t1=$(date +%s.%N)
	local secs; secs=$(awk "BEGIN{printf \"%.2f\", $t1 - $t0}")
	printf '%s\txveer\t%s\t%s\t%s\n' "$scale" "$status" "$secs" \
		"$(grep -o 'full sync: .*' "$OUT/veerd-ext.log" | head -1 | tr '\t' ' ' | cut -c1-200)" >>"$LOADS"
	log "load xveer at $scale services: $status in ${secs}s"
	[ $status = ok ] || { tail -5 "$OUT/veerd-ext.log" >&2; return 1; }
}

# timed_load SCALE MODE CMD...: runs a rule load under a timeout and records how long it took.
timed_load() {
	local scale=$1 mode=$2; shift 2
	local t0 t1 rc
	t0=$(date +%s.%N)
	timeout "$LOAD_TIMEOUT" "$@" >"$OUT/load-$mode.log" 2>&1 &
	LOADER=$!
	wait "$LOADER"; rc=$?
	LOADER=
	t1=$(date +%s.%N)
	local secs; secs=$(awk "BEGIN{printf \"%.2f\", $t1 - $t0}")
	if [ $rc = 0 ]; then
		printf '%s\t%s\tok\t%s\t%s\n' "$scale" "$mode" "$secs" "$(tail -1 "$OUT/load-$mode.log" | tr '\t' ' ')" >>"$LOADS"
	elif [ $rc = 124 ]; then
		printf '%s\t%s\ttimeout\t%s\tkilled after %ss\n' "$scale" "$mode" "$secs" "$LOAD_TIMEOUT" >>"$LOADS"
	else
		printf '%s\t%s\tfailed\t%s\t%s\n' "$scale" "$mode" "$secs" "$(tail -1 "$OUT/load-$mode.log" | tr '\t' ' ')" >>"$LOADS"
	fi
	log "load $mode at $scale services: rc=$rc in ${secs}s"
	return $rc
}

# worth_loading SCALE MODE TIMEOUT: no if this mode already failed, or if its last load scaled
# linearly to SCALE would exceed TIMEOUT (then the skip is recorded with its reason).
declare -A LAST_LOAD_SCALE LAST_LOAD_SECS LAST_LOAD_STATUS
worth_loading() {
	local scale=$1 mode=$2 budget=$3
	local prev=${LAST_LOAD_SCALE[$mode]:-} secs=${LAST_LOAD_SECS[$mode]:-} status=${LAST_LOAD_STATUS[$mode]:-}
	[ -z "$prev" ] && return 0
	local reason=
	if [ "$status" != ok ]; then
		reason="not loaded: it already failed ($status) at $prev services"
	else
		# iptables-restore grows linearly at best; nft -f grew as n² in earlier runs on this machine
		# (1.3 s at 1,000 services, 138 s at 10,000).
		# Below 1,000 services fixed costs dominate, so only linear growth is assumed from there.
		local power=1 growth="linear at best"
		[ "$mode" = nft ] && [ "$prev" -ge 1000 ] && power=2 growth="as n² in earlier runs"
		local predicted; predicted=$(awk "BEGIN{printf \"%.0f\", $secs * ($scale / ($prev > 0 ? $prev : 1)) ^ $power}")
		[ "$predicted" -gt "$budget" ] && reason="not loaded: ${secs} s at $prev services, so about ${predicted} s here (growth: $growth), over the ${budget} s budget"
	fi
	[ -z "$reason" ] && return 0
	printf '%s\t%s\tskipped\t0\t%s\n' "$scale" "$mode" "$reason" >>"$LOADS"
	log "load $mode at $scale services: $reason"
	return 1
}
record_load() { # mode scale (after timed_load)
	LAST_LOAD_SCALE[$1]=$2
	LAST_LOAD_SECS[$1]=$(awk -F'\t' -v s="$2" -v m="$1" '$1==s && $2==m {print $4}' "$LOADS" | tail -1)
	LAST_LOAD_STATUS[$1]=$(awk -F'\t' -v s="$2" -v m="$1" '$1==s && $2==m {print $3}' "$LOADS" | tail -1)
}

# One client run, appended to the results.
run_case() { # scale case mode round args...
	local scale=$1 case=$2 mode=$3 round=$4; shift 4
	local line
	line=$(timeout 30 "$NETBENCH" "$@" 2>&1 | tail -1)
	printf '%s\t%s\t%s\t%s\t%s\n' "$scale" "$case" "$mode" "$round" "$line" >>"$RESULTS"
}

for scale in $SCALES; do
	try_ipt=0; try_nft=0
	worth_loading "$scale" ipt "$LOAD_TIMEOUT" && try_ipt=1
	worth_loading "$scale" nft "$NFT_TIMEOUT" && try_nft=1
	log "scale $scale: generating rules"
	python3 "$HERE/gen.py" veer "$scale" "$OUT/veer.$scale" || exit 1
	# The rule files carry the measured service's NodePorts for node A's address (nft's
	# nodeport-ips); the socket mode never sends to them.
	[ $try_ipt = 1 ] && { python3 "$HERE/gen.py" iptables "$scale" "$OUT/iptables.$scale" "${XNODE[ipt]}" || exit 1; }
	[ $try_nft = 1 ] && { python3 "$HERE/gen.py" nft "$scale" "$OUT/nft.$scale" "${XNODE[nft]}" || exit 1; }
	m=$(( scale / 2 ))
	VIP=$(python3 -c "import ipaddress; print(ipaddress.IPv4Address(0x0A600001 + $m))")
	EP=$(python3 -c "import ipaddress; print(ipaddress.IPv4Address(0x0A800100 + $m * 10))")
	setup_scale || { log "sandbox setup failed"; exit 1; }
	if [ "$EXTERNAL" != 0 ]; then setup_external "$m" || { log "external sandbox setup failed"; exit 1; }; fi

	ok_veer=0; ok_ipt=0; ok_nft=0
	timed_load "$scale" veer "$VEER_BENCH" install "$VEER_BPF_OBJECT" "$CGROUP" "$PINS" "$OUT/veer.$scale" && ok_veer=1
	if [ $try_ipt = 1 ]; then
		timed_load "$scale" ipt nsenter --net="$(ns ipt)" iptables-restore "$OUT/iptables.$scale" && ok_ipt=1
		record_load ipt "$scale"
	fi
	if [ $try_nft = 1 ]; then
		LOAD_TIMEOUT=$NFT_TIMEOUT timed_load "$scale" nft nsenter --net="$(ns nft)" nft -f "$OUT/nft.$scale" && ok_nft=1
		record_load nft "$scale"
	fi
	okx_veer=0; okx_ipt=0; okx_nft=0
	if [ "$EXTERNAL" != 0 ]; then
		load_external_veer "$scale" && okx_veer=1
		[ $ok_ipt = 1 ] && timed_load "$scale" xipt nsenter --net="$(xns a-ipt)" iptables-restore "$OUT/iptables.$scale" && okx_ipt=1
		[ $ok_nft = 1 ] && LOAD_TIMEOUT=$NFT_TIMEOUT timed_load "$scale" xnft nsenter --net="$(xns a-nft)" nft -f "$OUT/nft.$scale" && okx_nft=1
	fi
	rm -f "$OUT/iptables.$scale" "$OUT/nft.$scale"

	# Cases: id mode client-args. Round r runs them starting at r (rotated order).
	CASES=(
		"crr direct --netns $(ns direct) crr $EP 8080 $MS"
		"udp direct --netns $(ns direct) udp $EP 8053 $MS"
		"bulk direct --netns $(ns direct) bulk $EP 8081 $MS"
	)
	[ $ok_veer = 1 ] && CASES+=(
		"crr veer --cgroup $CGROUP --netns $(ns veer) crr $VIP 80 $MS"
		"bystander veer --cgroup $CGROUP --netns $(ns veer) crr $EP 8080 $MS"
		"udp veer --cgroup $CGROUP --netns $(ns veer) udp $VIP 53 $MS"
		"bulk veer --cgroup $CGROUP --netns $(ns veer) bulk $VIP 81 $MS"
	)
	for mode in ipt nft; do
		v=ok_$mode; [ "${!v}" = 1 ] || continue
		CASES+=(
			"crr $mode --netns $(ns $mode) crr $VIP 80 $MS"
			"bystander $mode --netns $(ns $mode) crr $EP 8080 $MS"
			"udp $mode --netns $(ns $mode) udp $VIP 53 $MS"
			"bulk $mode --netns $(ns $mode) bulk $VIP 81 $MS"
		)
	done
	if [ "$EXTERNAL" != 0 ]; then
		# From outside the node: to node A's address:nodePort, the pod on node B (xcrr, xudp, xbulk).
		CASES+=(
			"xcrr direct --netns $(xns cl) crr $EP 8080 $MS"
			"xudp direct --netns $(xns cl) udp $EP 8053 $MS"
			"xbulk direct --netns $(xns cl) bulk $EP 8081 $MS"
		)
		for mode in veer ipt nft; do
			v=okx_$mode; [ "${!v}" = 1 ] || continue
			CASES+=(
				"xcrr $mode --netns $(xns cl) crr ${XNODE[$mode]} 30080 $MS"
				"xudp $mode --netns $(xns cl) udp ${XNODE[$mode]} 30053 $MS"
				"xbulk $mode --netns $(xns cl) bulk ${XNODE[$mode]} 30081 $MS"
			)
		done
	fi
	# Warm-up, not recorded: the first packets across the bridge wait for ARP and fill the routes' caches.
	for c in "${CASES[@]}"; do
		read -r cid mode args <<<"$c"
		# shellcheck disable=SC2086
		case $cid in x*) timeout 30 "$NETBENCH" ${args% *} 20 >/dev/null 2>&1 ;; esac
	done
	n=${#CASES[@]}
	log "scale $scale: $ROUNDS rounds of $n cases, ${MS} ms each"
	for ((r = 0; r < ROUNDS; r++)); do
		for ((k = 0; k < n; k++)); do
			c=${CASES[$(( (k + r * 3) % n ))]}
			read -r cid mode args <<<"$c"
			# shellcheck disable=SC2086
			run_case "$scale" "$cid" "$mode" "$r" $args
		done
	done

	# Each BPF program's own cost: Veer's cases again, with the kernel's run-time statistics on
	# (held by bpf_stats.py's BPF_ENABLE_STATS fd, off again when it exits), per program attached
	# to the clients' cgroup and to node A's eth0 (tc).
	if [ "$STATS_ROUNDS" -gt 0 ] && { [ $ok_veer = 1 ] || [ $okx_veer = 1 ]; }; then
		python3 "$HERE/bpf_stats.py" hold >"$OUT/bpf-stats-hold.log" 2>&1 &
		STATS_PID=$!
		for i in $(seq 50); do grep -q enabled "$OUT/bpf-stats-hold.log" && break; sleep 0.1; done
		statargs=("$CGROUP"); [ $okx_veer = 1 ] && statargs+=("$(xns a-veer)" eth0)
		if grep -q enabled "$OUT/bpf-stats-hold.log"; then
			# Case by case, so a translated connect and a bystander's are told apart.
			for c in "${CASES[@]}"; do
				read -r cid mode args <<<"$c"
				[ "$mode" = veer ] || continue
				python3 "$HERE/bpf_stats.py" show "${statargs[@]}" >"$OUT/bpf-before.json" || continue
				for ((r = 0; r < STATS_ROUNDS; r++)); do
					# shellcheck disable=SC2086
					timeout 30 "$NETBENCH" $args >/dev/null 2>&1
				done
				python3 "$HERE/bpf_stats.py" show "${statargs[@]}" >"$OUT/bpf-after.json" &&
					python3 "$HERE/bpf_stats.py" diff "$scale" "$cid" "$OUT/bpf-before.json" "$OUT/bpf-after.json" >>"$OUT/bpf-stats.tsv"
			done
		else
			log "scale $scale: BPF run-time statistics unavailable: $(tail -1 "$OUT/bpf-stats-hold.log")"
		fi
		kill -TERM "$STATS_PID" 2>/dev/null; wait "$STATS_PID" 2>/dev/null; STATS_PID=
		log "scale $scale: BPF program costs: $(awk -F'\t' -v s="$scale" '$1==s && $5>0 {printf "%s %s %.0f ns; ", $2, $3, $6/$5}' "$OUT/bpf-stats.tsv")"
	fi

	# Control plane, datapath half: the full Planner alone, then changes planned and written
	# the agent's way (a plan of the changed frontends against its copy of the maps).
	line=$(timeout "$PLAN_TIMEOUT" "$VEER_BENCH" plan "$OUT/veer.$scale" 2>&1 | tail -1)
	case $line in
	veer-plan*) printf '%s\tplan\tok\t0\t%s\n' "$scale" "$line" >>"$LOADS" ;;
	*) printf '%s\tplan\ttimeout\t%s\tkilled after %ss\n' "$scale" "$PLAN_TIMEOUT" "$PLAN_TIMEOUT" >>"$LOADS" ;;
	esac
	log "scale $scale: plan: ${line:-killed after ${PLAN_TIMEOUT}s}"
	if [ $ok_veer = 1 ] && [ "$scale" -ge "${BENCH_CHURN_MIN:-10000}" ]; then
		log "scale $scale: datapath churn for 3s"
		line=$(timeout 120 "$VEER_BENCH" churn "$PINS" "$OUT/veer.$scale" "$CHURN_RATE" 3 2>&1 | tail -1)
		printf '%s\tchurn\tok\t0\t%s\n' "$scale" "$line" >>"$LOADS"
	fi
	rm -f "$OUT/veer.$scale"
	if [ "$okx_veer" = 1 ]; then
		# The packet path's own counters after the rounds: what it did with every packet to a frontend.
		nsenter --net="$(xns a-veer)" curl -s --max-time 5 http://127.0.0.1:9965/metrics |
			sed -n 's/^veer_packet_path_packets_total{event="\([a-z_]*\)"} \([0-9.e+]*\)$/\1\t\2/p' |
			sed "s/^/$scale\t/" >>"$OUT/xveer-stats.tsv"
	fi
	log "scale $scale: teardown"
	teardown_scale
done

# Control plane through the real agent: veerd against the fake API server.
for scale in $AGENT_SCALES; do
	log "agent at $scale services: list, then ${CHURN_SECONDS}s of churn at ${CHURN_RATE}/s"
	ip netns add "$TAG-cp" && ip -n "$TAG-cp" link set lo up && mkdir "$CGROUP-cp" || { log "agent sandbox setup failed"; exit 1; }
	nsenter --net="$(ns cp)" python3 "$HERE/agent_bench.py" "$VEERD" "$VEER_BPF_OBJECT" "$CGROUP-cp" "$PINS-cp" \
		"$scale" "$CHURN_RATE" "$CHURN_SECONDS" >"$OUT/agent-$scale.log" 2>&1 &
	AGENT_PID=$!
	wait "$AGENT_PID"; rc=$?
	AGENT_PID=
	line=$(grep '^veer-agent ' "$OUT/agent-$scale.log" | tail -1)
	if [ $rc = 0 ] && [ -n "$line" ]; then
		printf '%s\tagent\tok\t0\t%s\n' "$scale" "$line" >>"$LOADS"
	else
		printf '%s\tagent\tfailed\t0\t%s\n' "$scale" "$(tail -1 "$OUT/agent-$scale.log" | tr '\t' ' ' | cut -c1-300)" >>"$LOADS"
	fi
	log "agent at $scale: ${line:-failed, see $OUT/agent-$scale.log}"
	teardown_agent
done
# The agent's pipeline in one process (veer-bench pipeline): list bytes → parse → decode and
# store → select → plan → maps in memory, no API server and no kernel in the way.
for scale in $AGENT_SCALES; do
	services=${scale%x*}; endpoints=10
	[ "$services" = "$scale" ] || endpoints=${scale#*x}
	line=$(timeout 600 "$VEER_BENCH" pipeline "$services" "$endpoints" 2>&1 | tail -1)
	case "$line" in
	veer-pipeline*) printf '%s\tpipeline\tok\t0\t%s\n' "$scale" "$line" >>"$LOADS" ;;
	*) printf '%s\tpipeline\tfailed\t0\t%s\n' "$scale" "$(printf '%s' "$line" | tr '\t' ' ' | cut -c1-300)" >>"$LOADS" ;;
	esac
	log "pipeline at $scale: $line"
done
log "measurements done in $(( $(date +%s) - START ))s"
kernel=$(uname -r); cpu=$(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ *//'); ncpu=$(nproc)
printf 'kernel\t%s\ncpu\t%s\nncpu\t%s\nrounds\t%s\nms\t%s\nscales\t%s\nseconds\t%s\niptables\t%s\nnft\t%s\n' \
	"$kernel" "$cpu" "$ncpu" "$ROUNDS" "$MS" "$SCALES" "$(( $(date +%s) - START ))" \
	"$(iptables -V 2>&1)" "$(nft -v 2>&1)" >"$OUT/machine.tsv"
if [ -n "$DOC" ]; then
	"${BENCH_PYTHON:-python3}" "$HERE/report.py" "$OUT" "$DOC" || exit 1
fi
