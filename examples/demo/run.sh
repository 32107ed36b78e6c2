#!/usr/bin/env bash
# make demo: the experiments our users learned Kubernetes networking from, live, on one
# machine, with no cluster. Everything runs in network namespaces and child cgroups that
# this script creates and removes; nothing touches the host's network.
#
# (a)-(e) run on one node namespace: pods on its loopback, veerd in the host's namespace with
# the packet path off. (f) is the articles' second half, from outside the node: two node
# namespaces and an outside client on a bridge namespace, pods in namespaces of their own
# behind veths (as a CNI plugin makes them), and one veerd per node in its node's namespace
# with the packet path (tc on that namespace's eth0 only).
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
# (f): namespaces $NAME-x<suffix>, cgroups $CG-n<k>, pins $PINS-n<k>, one veerd per node.
XNS=()
XVEERD_PIDS=()

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
	for pid in "${XVEERD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${XVEERD_PIDS[@]}"; do
		for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	done
	for pid in "${PIDS[@]}" "${XVEERD_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}" "${XVEERD_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	"$BIN/veerctl" uninstall --force --bpffs "$PINS" >/dev/null 2>&1
	rmdir "$PINS" 2>/dev/null
	for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
	ip netns del "$NAME" 2>/dev/null
	local k
	for k in 1 2; do
		# Inside the node's namespace, so it also removes the tc filter and the nft table there.
		[[ -d $PINS-n$k ]] && nsenter --net="/run/netns/$NAME-xn$k" "$BIN/veerctl" uninstall --force --bpffs "$PINS-n$k" >/dev/null 2>&1
		[[ -d $PINS-n$k ]] && "$BIN/veerctl" uninstall --force --bpffs "$PINS-n$k" >/dev/null 2>&1
		rm -rf "$PINS-n$k" "/run/veer$PINS-n$k"
		for _ in 1 2 3 4 5 6 7 8 9 10; do [[ -d $CG-n$k ]] || break; rmdir "$CG-n$k" 2>/dev/null && break; sleep 0.1; done
	done
	local ns
	for ns in "${XNS[@]}"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "/run/veer$PINS"
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

bold "(f) From outside the node: NodePort and LoadBalancer"
# Two nodes and an outside client on a bridge; pods in namespaces of their own behind veths.
XNET=192.168.50
N1=$XNET.11 N2=$XNET.12 CLIENT=$XNET.200
xns() { echo "/run/netns/$NAME-x$1"; }
xadd() { ip netns add "$NAME-x$1" && XNS+=("$NAME-x$1") && ip -n "$NAME-x$1" link set lo up; }
xadd br
ip -n "$NAME-xbr" link add br0 type bridge && ip -n "$NAME-xbr" link set br0 up
# xport NS ADDRESS: NS's eth0, its veth peer a port of the bridge (both ends made in our namespaces).
XPORTS=0
xport() {
	XPORTS=$((XPORTS + 1))
	ip -n "$NAME-x$1" link add eth0 type veth peer name "p$XPORTS" netns "$NAME-xbr"
	ip -n "$NAME-xbr" link set "p$XPORTS" master br0 up
	ip -n "$NAME-x$1" addr add "$2/24" dev eth0
	ip -n "$NAME-x$1" link set eth0 up
}
xadd out
xport out "$CLIENT"
for k in 1 2; do
	xadd "n$k"
	xport "n$k" "$XNET.1$k"
	ip -n "$NAME-xn$k" route add "10.244.$((3 - k)).0/24" via "$XNET.1$((3 - k))"
	nsenter --net="$(xns n$k)" sysctl -qw net.ipv4.ip_forward=1
	mkdir "$CG-n$k"
done
# xpod NAME NODE IP: a pod as a CNI plugin makes it, answering "NAME CLIENT_IP:PORT" on :8080.
XPODS=0
xpod() {
	XPODS=$((XPODS + 1))
	local ns=p$XPODS node=n$2
	xadd "$ns"
	ip -n "$NAME-x$node" link add "veth$XPODS" type veth peer name eth0 netns "$NAME-x$ns"
	ip -n "$NAME-x$node" addr add 169.254.1.1/32 dev "veth$XPODS"
	ip -n "$NAME-x$node" link set "veth$XPODS" up
	ip -n "$NAME-x$node" route add "$3/32" dev "veth$XPODS"
	ip -n "$NAME-x$ns" addr add "$3/32" dev eth0
	ip -n "$NAME-x$ns" link set eth0 up
	ip -n "$NAME-x$ns" route add 169.254.1.1 dev eth0
	ip -n "$NAME-x$ns" route add default via 169.254.1.1 dev eth0
	"$PROBE" --netns "$(xns $ns)" serve-whoami "$3" 8080 "$1" >"$WORK/$1.log" 2>&1 &
	PIDS+=($!)
}
xpod front-a 1 10.244.1.21
xpod front-b 2 10.244.2.21
xpod front-c 2 10.244.2.22
xpod mario 2 10.244.2.31
XM=$WORK/outside-manifests
mkdir "$XM"
for k in 1 2; do
	cat >"$XM/node-$k.yaml" <<YAML
apiVersion: v1
kind: Node
metadata: {name: node-$k, labels: {kubernetes.io/hostname: node-$k}}
status:
  addresses: [{type: InternalIP, address: $XNET.1$k}]
YAML
done
xendpoint() { # ip pod node
	printf -- '- addresses: [%s]\n  conditions: {ready: true, serving: true, terminating: false}\n  nodeName: node-%s\n  targetRef: {kind: Pod, name: %s, namespace: default}\n' "$1" "$3" "$2"
}
cat >"$XM/front.yaml" <<YAML
# A LoadBalancer Service (so also a NodePort one): the cloud's load balancer sends to 203.0.113.10.
apiVersion: v1
kind: Service
metadata: {name: front, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.1.10
  clusterIPs: [10.96.1.10]
  externalTrafficPolicy: Cluster
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}]
status:
  loadBalancer: {ingress: [{ip: 203.0.113.10}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: front-1, namespace: default, labels: {kubernetes.io/service-name: front}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
$(xendpoint 10.244.1.21 front-a 1; xendpoint 10.244.2.21 front-b 2; xendpoint 10.244.2.22 front-c 2)
YAML
cat >"$XM/mario.yaml" <<YAML
# The articles' mario: nodePort 30001 with externalTrafficPolicy: Local, here as a LoadBalancer
# Service, so it has a healthCheckNodePort for the cloud's load balancer to probe.
apiVersion: v1
kind: Service
metadata: {name: mario, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.1.11
  clusterIPs: [10.96.1.11]
  externalTrafficPolicy: Local
  healthCheckNodePort: 32001
  ports: [{name: mario-webport, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30001}]
status:
  loadBalancer: {ingress: [{ip: 203.0.113.11}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: mario-1, namespace: default, labels: {kubernetes.io/service-name: mario}}
addressType: IPv4
ports: [{name: mario-webport, port: 8080, protocol: TCP}]
endpoints:
$(xendpoint 10.244.2.31 mario 2)
YAML
for k in 1 2; do
	nsenter --net="$(xns n$k)" "$BIN/veerd" --manifests "$XM" --cgroup "$CG-n$k" --bpffs "$PINS-n$k" --node-name "node-$k" \
		--metrics-address 127.0.0.1:9965 >"$WORK/veerd-n$k.log" 2>&1 &
	XVEERD_PIDS+=($!)
done
say "  bridge $XNET.0/24: node-1 $N1, node-2 $N2, outside client $CLIENT (no route to any pod)"
say "  pods: front-a on node-1; front-b, front-c and mario on node-2 (each in its own namespace)"
say "  veerd on each node: --manifests, its packet path on the node's eth0"
# Waits until a node's veerd has the packet path on its eth0 and has written its maps.
# The text is read whole before grep: `curl | grep -q` fails under pipefail whenever grep exits
# at its match before curl has written the rest (curl then dies of SIGPIPE).
xmetrics() { nsenter --net="$(xns n$1)" curl -s --max-time 5 http://127.0.0.1:9965/metrics; }
attached() { grep -q '^veer_packet_path_interfaces 1$' <<<"$(xmetrics $1 2>/dev/null || true)"; }
for k in 1 2; do
	for _ in $(seq 200); do
		attached $k && grep -q 'full sync:' "$WORK/veerd-n$k.log" && break
		sleep 0.05
	done
	attached $k ||
		fail "node-$k's packet path is not attached: $(tail -5 "$WORK/veerd-n$k.log")"
done
outside() { nsenter --net="$(xns out)" "$@"; }
# hundred_from_outside URL: 100 requests from the outside client; each answer is "POD CLIENT:PORT".
hundred_from_outside() {
	outside sh -c 'for i in $(seq 100); do curl -s --max-time 2 "$0" || echo FAILED; done' "$1" >"$WORK/answers"
	awk '{print $1}' "$WORK/answers" | sort | uniq -c
}

say ""
say "  \$ curl http://$N1:30080/    (100 times, from outside: node-1's NodePort)"
out=$(hundred_from_outside "http://$N1:30080/")
sed 's/^/    /' <<<"$out"
for p in front-a front-b front-c; do
	(($(count_of "$out" $p) >= 10)) || fail "$p got $(count_of "$out" $p) of 100 NodePort requests"
done
(($(count_of "$out" FAILED) == 0)) || fail "NodePort requests failed"
seen=$(awk '{sub(/:[0-9]+$/, "", $2); print $1 " saw " $2}' "$WORK/answers" | sort -u)
say "  the address each pod saw the client as:"
sed 's/^/    /' <<<"$seen"
grep -q "$CLIENT" <<<"$seen" && fail "with externalTrafficPolicy: Cluster no pod should see the client's own address"
for p in front-b front-c; do
	grep -qx "$p saw $N1" <<<"$seen" || fail "$p (on node-2) should see node-1's address $N1: $seen"
done
grep -qx "front-a saw 169.254.1.1" <<<"$seen" || fail "front-a (on node-1) should see node-1's address on its veth: $seen"
say "  → pods on both nodes serve. node-1 masquerades (externalTrafficPolicy: Cluster) to its own address on"
say "    the way to the pod: $N1 towards node-2, 169.254.1.1 on front-a's veth. So front-b's and"
say "    front-c's replies come back through node-1, which translates them for the client."
say ""
say "  The cloud's load balancer sends the LB IP 203.0.113.10 to node-2 (a route on the client's side):"
outside ip route add 203.0.113.10/32 via "$N2"
say "  \$ curl http://203.0.113.10/    (100 times)"
out=$(hundred_from_outside "http://203.0.113.10/")
sed 's/^/    /' <<<"$out"
for p in front-a front-b front-c; do
	(($(count_of "$out" $p) >= 10)) || fail "$p got $(count_of "$out" $p) of 100 LB IP requests"
done
(($(count_of "$out" FAILED) == 0)) || fail "LB IP requests failed"

say ""
say "  Counted per pod, by the kernel, on each node (veer_endpoint_hits_total):"
for k in 1 2; do
	hits=$(xmetrics $k | grep '^veer_endpoint_hits_total{.*service="front"' || true)
	sed "s/^/    node-$k: /" <<<"$hits"
	total=$(awk '{s += $NF} END {print s + 0}' <<<"$hits")
	((total == 100)) || fail "node-$k counted $total front requests, but it translated 100"
done
say "  \$ veerctl services --bpffs $PINS-n1    (node-1's maps: the NodePort on its own address)"
"$BIN/veerctl" services --bpffs "$PINS-n1" | grep -E 'SERVICE|default/front' | sed 's/^/    /'
say "  → node-1 translated the 100 NodePort requests, node-2 the 100 LB IP ones, spread over the three pods."

say ""
say "  mario: externalTrafficPolicy: Local, its only pod on node-2."
say "  \$ curl http://$N2:30001/"
answer=$(outside curl -s --max-time 2 "http://$N2:30001/" || true)
say "    $answer"
[[ ${answer%% *} == mario ]] || fail "mario did not answer on node-2's NodePort: $answer"
client_seen=${answer#* }
client_seen=${client_seen%:*}
[[ $client_seen == "$CLIENT" ]] || fail "mario saw $client_seen, not the client's own address $CLIENT"
say "  → mario sees the client's own address, $CLIENT: no masquerade with Local."
say "  \$ curl --max-time 2 http://$N1:30001/    (node-1 has no mario pod)"
rc=0
outside curl -s --max-time 2 "http://$N1:30001/" >/dev/null || rc=$?
say "    curl exit $rc (28: timed out)"
((rc == 28)) || fail "node-1 should drop mario's packets silently (curl exit 28), got exit $rc"
say "  → node-1 drops them silently, as kube-proxy does: no reset, no ICMP."
say ""
say "  Which node should the load balancer use? The healthCheckNodePort says:"
for k in 1 2; do
	ip=$XNET.1$k
	say "  \$ curl http://$ip:32001/"
	body=$(outside curl -s --max-time 2 -w ' HTTP %{http_code}' "http://$ip:32001/" || true)
	say "    $(tr -s ' \n\t' ' ' <<<"$body")"
	want=200 eps=1
	((k == 1)) && want=503 eps=0
	grep -q "HTTP $want" <<<"$body" || fail "node-$k's health check should answer $want: $body"
	grep -q "\"localEndpoints\": *$eps" <<<"$body" || fail "node-$k's health check should count $eps local endpoints: $body"
done
say "  → node-2 (200, one local endpoint) takes mario's traffic; node-1 (503) gets none from the load balancer."
outside ip route add 203.0.113.11/32 via "$N2"
answer=$(outside curl -s --max-time 2 "http://203.0.113.11/" || true)
say "  \$ curl http://203.0.113.11/    (the LB IP, sent to node-2)"
say "    $answer"
[[ $answer == "mario $CLIENT:"* ]] || fail "mario's LB IP did not answer with the client's address: $answer"

if ((KEEP)); then
	bold "The sandbox stays up. Try, in another shell (as root):"
	say "  sh -c 'echo \$\$ > $CG/cgroup.procs; exec nsenter --net=$NSPATH bash'   # a shell as a pod on this node"
	say "  curl http://10.96.0.10/      dig @10.96.0.53 web.default.svc.cluster.local"
	say "  $BIN/veerctl services --bpffs $PINS"
	say "  $BIN/veerctl explain default/web --bpffs $PINS"
	say "  $BIN/veerctl trace --bpffs $PINS"
	say "  \$EDITOR $MANIFESTS/web-slice.yaml    # veerd reprograms on save"
	say "  curl -s $METRICS"
	say "  nsenter --net=/run/netns/$NAME-xout curl http://$N1:30080/    # from outside: node-1's NodePort"
	say "  nsenter --net=/run/netns/$NAME-xout curl http://203.0.113.11/  # mario's LB IP (eTP=Local)"
	say "  $BIN/veerctl services --bpffs $PINS-n1                          # node-1's maps"
	say "Press Ctrl-C to tear everything down."
	while kill -0 "$VEERD_PID" 2>/dev/null; do sleep 1; done
	fail "veerd exited"
fi

bold "(g) Tearing everything down"
cleanup
trap - EXIT
say "  removed the veerds, the pods, the pins, the cgroups and the namespaces. Done."
