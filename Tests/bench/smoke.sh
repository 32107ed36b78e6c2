#!/usr/bin/env bash
# A tiny run of the bench harness, for `make test`: one scale of 1 service, one round of
# 20 ms cases (the external-client round included: veerd's packet path on node A, the pod on
# node B), the agent at 50 services with 1 s of churn, into a temporary directory.
# It checks that the harness still works (a results table, an agent row, nothing left
# behind), never how fast anything is; it never touches docs/benchmarks.md.
# Env: as run.sh (VEER_BPF_OBJECT, VEER_BENCH, NETBENCH, VEERD).
set -uo pipefail
export PATH=$PATH:/usr/sbin:/sbin
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TMP=$(mktemp -d /tmp/veer-bench-smoke.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "bench smoke: $*" >&2; [ -f "$TMP/run.log" ] && tail -20 "$TMP/run.log" >&2; exit 1; }

BENCH_SCALES=1 BENCH_ROUNDS=1 BENCH_MS=20 BENCH_AGENT_SCALES=50 BENCH_CHURN_SECONDS=1 BENCH_CHURN_RATE=20 \
	BENCH_OUT="$TMP/out" BENCH_DOC="$TMP/bench.md" "$HERE/run.sh" >"$TMP/run.log" 2>&1 &
pid=$!
wait $pid || fail "run.sh failed (rc=$?)"

doc=$TMP/bench.md
[ -s "$doc" ] || fail "no report written"
grep -q '^| 1 | Veer | ' "$doc" || fail "no Veer row in the results table"
grep -q '^| 1 | direct | ' "$doc" || fail "no direct row in the raw numbers"
grep -Eq '^\| 50 \| [0-9.]+ s \|' "$doc" || fail "no agent row (list → maps) in the report"
grep -q 'failed' "$TMP/out/loads.tsv" && grep -P '\t(veer|agent|plan|pipeline)\tfailed' "$TMP/out/loads.tsv" && fail "a Veer step failed"
grep -Pq '^50\tpipeline\tok\t' "$TMP/out/loads.tsv" || fail "no pipeline row (veer-bench pipeline)"
# The API server measured alone (every page with curl) beside the agent's share.
grep -Eq '^\| 50 \| off \| [0-9.]+ s \(2 pages\) / [0-9.]+ s \| [0-9.]+ s \| [0-9.]+ s / -?[0-9.]+ s \|' "$doc" || fail "no API-server-alone row in the report"
# Each BPF program's cost: the statistics pass counted the translated connects' connect4 runs.
grep -Pq '^1\tcrr\tveer_connect4\tcgroup_inet4_connect\t[1-9][0-9]*\t[1-9]' "$TMP/out/bpf-stats.tsv" || fail "no connect4 run counted with BPF statistics on: $(cat "$TMP/out/bpf-stats.tsv")"
grep -q '^## Each BPF program' "$doc" || fail "no per-program BPF cost section in the report"
# The external round: it served through Veer's packet path (connections made, none failed, bytes
# moved), direct served too, and the report has its section. Counts, never speeds.
res=$TMP/out/results.tsv
grep -Pq '^1\txveer\tok\t' "$TMP/out/loads.tsv" || fail "veerd's packet path did not come up on node A (loads.tsv: $(grep -P '\txveer\t' "$TMP/out/loads.tsv"))"
for mode in direct veer; do
	grep -Pq "^1\txcrr\t$mode\t0\tcrr n=[1-9][0-9]* errors=0 " "$res" || fail "external connect ($mode) made no connection or had errors: $(grep -P "\txcrr\t$mode\t" "$res")"
	grep -Pq "^1\txudp\t$mode\t0\tudp n=[1-9][0-9]* errors=0 " "$res" || fail "external UDP ($mode) got no answer or had errors: $(grep -P "\txudp\t$mode\t" "$res")"
	grep -Pq "^1\txbulk\t$mode\t0\tbulk bytes=[1-9]" "$res" || fail "external bulk ($mode) moved no bytes: $(grep -P "\txbulk\t$mode\t" "$res")"
done
grep -Pq '^1\ttranslated\t[1-9]' "$TMP/out/xveer-stats.tsv" || fail "the packet path's counters show no translated flow: $(cat "$TMP/out/xveer-stats.tsv")"
grep -q '^## From outside the node' "$doc" || fail "no external-client section in the report"
grep -q '^| 1 | Veer (packet path) | [0-9]' "$doc" || fail "no Veer row in the external-client table"

# Nothing left: namespaces, cgroups, pins, state files of run.sh's pid.
CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
tag=veer-bench-$pid
ip netns list | grep -q "^$tag" && fail "network namespace $tag-* left behind"
ls -d "$CG2/$tag"* >/dev/null 2>&1 && fail "cgroup $CG2/$tag* left behind"
ls -d "/sys/fs/bpf/$tag"* >/dev/null 2>&1 && fail "pins /sys/fs/bpf/$tag* left behind"
ls -d "/run/veer/sys/fs/bpf/$tag"* >/dev/null 2>&1 && fail "state files /run/veer/sys/fs/bpf/$tag* left behind"
echo "bench smoke: ok ($(grep -c . "$TMP/out/results.tsv") client runs, external round through the packet path, report and agent row present, sandbox removed)"
