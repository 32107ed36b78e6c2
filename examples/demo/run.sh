#!/usr/bin/env bash
# make demo: the experiments our users learned Kubernetes networking from, live, on one
# machine, with no cluster. Everything runs in a network namespace and a child cgroup
# that this script creates and removes; nothing touches the host's network.
set -euo pipefail

KEEP=0
[[ "${1:-}" == "--keep" ]] && KEEP=1
BIN=${VEER_BIN:?run through make demo}
PROBE=${VEER_PROBE:?run through make demo}
export VEER_BPF_OBJECT=${VEER_BPF_OBJECT:?run through make demo}
HERE=$(cd "$(dirname "$0")" && pwd)

NAME=veer-demo-$$
NSPATH=/run/netns/$NAME
CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
CG=$CG2/$NAME
PINS=/sys/fs/bpf/$NAME
WORK=$(mktemp -d /tmp/veer-demo.XXXXXX)
MANIFESTS=$WORK/manifests
PIDS=()

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
say() { printf '%s\n' "$*"; }
fail() {
	printf '\n\033[31mDEMO FAILED: %s\033[0m\n' "$*" >&2
	[[ -s $WORK/veerd.log ]] && { echo "--- veerd log (last 20 lines):" >&2; tail -20 "$WORK/veerd.log" >&2; }
	exit 1
}

cleanup() {
	set +e
	# veerd stops gracefully on TERM; the pods are killed outright (a parent that ignores
	# TERM, as test runners do, passes that on to them).
	[[ -n ${VEERD_PID:-} ]] && kill -TERM "$VEERD_PID" 2>/dev/null
	for _ in $(seq 40); do [[ -n ${VEERD_PID:-} ]] && kill -0 "$VEERD_PID" 2>/dev/null || break; sleep 0.05; done
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	"$BIN/veerctl" uninstall --force --bpffs "$PINS" >/dev/null 2>&1
	rmdir "$PINS" 2>/dev/null
	for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
	ip netns del "$NAME" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || fail "the demo loads BPF programs: run it as root"
[[ -n $CG2 ]] || fail "no cgroup2 mount in /proc/mounts"

# A client "pod" on this node: joins the demo cgroup, then the demo namespace, then runs.
in_pod() {
	sh -c 'echo $$ > "$1/cgroup.procs"; ns=$0; shift; exec nsenter --net="$ns" "$@"' "$NSPATH" "$CG" "$@" </dev/null
}
# 100 requests to the web Service, counted per pod: the seed articles' `sort | uniq -c`.
hundred() {
	in_pod sh -c 'for i in $(seq 100); do curl -s --max-time 2 http://10.96.0.10/ || echo FAILED; done' | sort | uniq -c
}
count_of() { awk -v p="$2" '$2==p {print $1}' <<<"$1" | grep . || echo 0; }
# Waits until veerctl's view of the maps matches a pattern (or stops matching, with !).
wait_maps() {
	local negate=0
	[[ $1 == "!" ]] && { negate=1; shift; }
	for _ in $(seq 100); do
		out=$("$BIN/veerctl" services --bpffs "$PINS" 2>/dev/null || true)
		if ((negate)); then grep -qE "$1" <<<"$out" || return 0; else grep -qE "$1" <<<"$out" && return 0; fi
		sleep 0.05
	done
	((negate)) && fail "the maps still show '$1'"
	fail "the maps never showed '$1'"
}
# Replaces a manifest the way an editor does (write, then rename): veerd sees one change.
put_slice() { cat >"$MANIFESTS/.web-slice.tmp"; mv "$MANIFESTS/.web-slice.tmp" "$MANIFESTS/web-slice.yaml"; }
endpoint() { # ip pod zone ready [hint-zone]
	printf -- '- addresses: [%s]\n  conditions: {ready: %s, serving: %s, terminating: false}\n  nodeName: node-%s\n  zone: zone-%s\n  targetRef: {kind: Pod, name: %s, namespace: default}\n' \
		"$1" "$4" "$4" "${3}" "${3}" "$2"
	[[ -n ${5:-} ]] && printf '  hints:\n    forZones:\n    - name: zone-%s\n' "$5"
	return 0
}
slice_head() {
	sed -n '1,/^endpoints:/p' "$HERE/manifests/web-slice.yaml"
}

bold "Setting up a sandbox: one network namespace (no route out), one child cgroup, three pods"
ip netns add "$NAME"
ip -n "$NAME" link set lo up
for ip in 10.244.1.11 10.244.2.12 10.244.3.13 10.244.1.53; do ip -n "$NAME" addr add "$ip/32" dev lo; done
mkdir "$CG"
cp -r "$HERE/manifests" "$MANIFESTS"
for pod in "web-a 10.244.1.11" "web-b 10.244.2.12" "web-c 10.244.3.13"; do
	set -- $pod
	"$PROBE" --netns "$NSPATH" serve-http "$2" 8080 "$1" >"$WORK/$1.log" 2>&1 &
	PIDS+=($!)
done
nsenter --net="$NSPATH" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
	--listen-address=10.244.1.53 --bind-interfaces --port=5353 --user=root \
	--address=/web.default.svc.cluster.local/10.96.0.10 >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
say "  pods web-a (zone-a) 10.244.1.11, web-b (zone-b) 10.244.2.12, web-c (zone-c) 10.244.3.13 answer with their name on :8080"
say "  pod coredns-1 (dnsmasq) answers DNS on 10.244.1.53:5353"

# veerd runs in the host's namespace here: its packet path (tc, nftables) stays off.
"$BIN/veerd" --manifests "$MANIFESTS" --cgroup "$CG" --bpffs "$PINS" --node-name node-a --no-packet-path \
	--metrics-address 127.0.0.1:0 --healthz-bind-address 127.0.0.1:0 >"$WORK/veerd.log" 2>&1 &
VEERD_PID=$!
PIDS+=($!)
for _ in $(seq 200); do grep -q "metrics on" "$WORK/veerd.log" 2>/dev/null && break; sleep 0.05; done
METRICS=$(grep -o 'http://127.0.0.1:[0-9]*/metrics' "$WORK/veerd.log" | head -1)
[[ -n $METRICS ]] || fail "veerd did not start"
wait_maps 'default/web:http.*web-a.*web-b.*web-c|default/web:http.*web-[abc].*web-[abc].*web-[abc]'
say "  veerd --manifests $MANIFESTS runs as node-a (zone-a) and has programmed the Services:"
"$BIN/veerctl" services --bpffs "$PINS" | sed 's/^/    /'

bold "(a) 100 requests to the ClusterIP 10.96.0.10, counted per pod"
out=$(hundred)
sed 's/^/    /' <<<"$out"
for p in web-a web-b web-c; do
	(($(count_of "$out" $p) >= 10)) || fail "$p got $(count_of "$out" $p) of 100 requests"
done
(($(count_of "$out" FAILED) == 0)) || fail "requests failed"
say "  → every pod serves; the kernel picked a pod at connect() time, no NAT on the packets."

bold "(b) web-b's readiness probe fails: its EndpointSlice entry turns ready: false"
{ slice_head; endpoint 10.244.1.11 web-a a true; endpoint 10.244.2.12 web-b b false; endpoint 10.244.3.13 web-c c true; } | put_slice
wait_maps ! 'web-b'
out=$(hundred)
sed 's/^/    /' <<<"$out"
(($(count_of "$out" web-b) == 0)) || fail "web-b is not ready but got $(count_of "$out" web-b) requests"
(($(count_of "$out" FAILED) == 0)) || fail "requests failed"
say "  → none reach web-b, and no request failed."

bold "(c) Topology-aware hints: each endpoint is hinted for its own zone; this node is in zone-a"
{ slice_head; endpoint 10.244.1.11 web-a a true a; endpoint 10.244.2.12 web-b b true b; endpoint 10.244.3.13 web-c c true c; } | put_slice
wait_maps ! 'web-[bc]'
out=$(hundred)
sed 's/^/    /' <<<"$out"
(($(count_of "$out" web-a) == 100)) || fail "with zone hints only web-a (zone-a) should answer"
say "  → all 100 stay in zone-a. Why? veerctl explain gives the selector's own reasons:"
say "  \$ veerctl explain default/web"
explain=$("$BIN/veerctl" explain default/web --bpffs "$PINS")
sed -n '/topology:/p; /ENDPOINT/,/kernel:/p' <<<"$explain" | sed 's/^  /    /'
grep -q 'hintedForOtherZone' <<<"$explain" || fail "explain does not name the zone hints"
grep -q 'matches the decision' <<<"$explain" || fail "the kernel does not hold what the agent decided"
say "  Safeguard: web-c loses its hint. kube-proxy then ignores hints for the whole service:"
{ slice_head; endpoint 10.244.1.11 web-a a true a; endpoint 10.244.2.12 web-b b true b; endpoint 10.244.3.13 web-c c true; } | put_slice
wait_maps 'web-c'
out=$(hundred)
sed 's/^/    /' <<<"$out"
for p in web-a web-b web-c; do
	(($(count_of "$out" $p) >= 10)) || fail "after the safeguard $p got $(count_of "$out" $p) of 100"
done
say "  → spread over all zones again."

bold "(d) DNS through the kube-dns ClusterIP: dig @10.96.0.53 web.default.svc.cluster.local"
dig_out=$(in_pod dig +time=2 +tries=1 @10.96.0.53 web.default.svc.cluster.local A)
answer=$(awk '/ANSWER SECTION/{getline; print $NF}' <<<"$dig_out")
server=$(grep -o 'SERVER: [^ ]*' <<<"$dig_out" || true)
say "    answer: $answer   ($server)"
[[ $answer == 10.96.0.10 ]] || fail "dig got no answer through the ClusterIP: $dig_out"
[[ $server == "SERVER: 10.96.0.53#53(10.96.0.53)" ]] || fail "the reply did not come from the ClusterIP: $server"
say "  → the pod at 10.244.1.53:5353 answered; recvmsg4 showed the reply as from 10.96.0.53:53, so dig accepted it."

bold "(e) What the kernel holds and counted"
say "  \$ veerctl services"
"$BIN/veerctl" services --bpffs "$PINS" | sed 's/^/    /'
say "  \$ curl -s $METRICS | grep -E 'veer_endpoint_(hits_total|info)'"
metrics=$(curl -s "$METRICS")
hits=$(grep '^veer_endpoint_hits_total' <<<"$metrics")
grep -E '^veer_endpoint_(hits_total|info)' <<<"$metrics" | sed 's/^/    /'
grep -q 'veer_endpoint_info{.*pod="web-a"' <<<"$metrics" || fail "no veer_endpoint_info for web-a in /metrics"
total=$(awk '/service="web"/ {s += $NF} END {print s + 0}' <<<"$hits")
((total == 400)) || fail "the web counters add up to $total, but 400 requests were made"
say "  → the kernel counted every one of the 400 requests, per pod, also across readiness changes."

say "  \$ veerctl trace --service default/web --count 3    (while a pod makes 3 requests)"
"$BIN/veerctl" trace --bpffs "$PINS" --service default/web --count 3 --duration 10 >"$WORK/trace.txt" &
TRACE_PID=$!
for _ in $(seq 100); do grep -q '"value": *1\|"value":1' <(bpftool -j map dump pinned "$PINS/v1/maps/veer_trace_on" 2>/dev/null) && break; sleep 0.05; done
in_pod sh -c 'for i in 1 2 3; do curl -s --max-time 2 http://10.96.0.10/ >/dev/null; done'
wait "$TRACE_PID" || true
sed 's/^/    /' "$WORK/trace.txt"
(($(grep -c 'default/web:http) → ' "$WORK/trace.txt") == 3)) || fail "veerctl trace did not show the 3 requests"

if ((KEEP)); then
	bold "The sandbox stays up. Try, in another shell (as root):"
	say "  sh -c 'echo \$\$ > $CG/cgroup.procs; exec nsenter --net=$NSPATH bash'   # a shell as a pod on this node"
	say "  curl http://10.96.0.10/      dig @10.96.0.53 web.default.svc.cluster.local"
	say "  $BIN/veerctl services --bpffs $PINS"
	say "  $BIN/veerctl explain default/web --bpffs $PINS"
	say "  $BIN/veerctl trace --bpffs $PINS"
	say "  \$EDITOR $MANIFESTS/web-slice.yaml    # veerd reprograms on save"
	say "  curl -s $METRICS"
	say "Press Ctrl-C to tear everything down."
	while kill -0 "${PIDS[-1]}" 2>/dev/null; do sleep 1; done
	fail "veerd exited"
fi

bold "(f) Tearing everything down"
cleanup
trap - EXIT
say "  removed veerd, the pods, the pins, the cgroup and the namespace. Done."
