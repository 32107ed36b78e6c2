#!/usr/bin/env python3
"""Each BPF program's own cost, for make bench (Tests/bench/run.sh):

  bpf_stats.py hold                     turn the kernel's per-program run-time statistics on
                                        (BPF_ENABLE_STATS), print "enabled", keep them on until
                                        killed. The kernel counts only while some such fd is open
                                        and turns them off with the last one: unlike the
                                        kernel.bpf_stats_enabled sysctl, nothing is left on if
                                        the bench dies, and other users' settings are untouched.
  bpf_stats.py show CGROUP [NETNS DEV]  JSON {id: {name, attach, run_cnt, run_time_ns}} of the
                                        programs attached to CGROUP, and to DEV inside NETNS (tc)
  bpf_stats.py diff SCALE CASE BEFORE AFTER
                                        TSV lines: scale, case, program, attach, runs, ns (AFTER - BEFORE)

run_time_ns and run_cnt are what bpftool prog show reports; they grow only while stats are on.
"""
import ctypes, json, os, platform, signal, subprocess, sys

BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0
NR_BPF = {"x86_64": 321, "aarch64": 280}


def hold():
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint32 * 2)(BPF_STATS_RUN_TIME, 0)  # union bpf_attr: enable_stats.type
    fd = libc.syscall(NR_BPF[platform.machine()], BPF_ENABLE_STATS, ctypes.byref(attr), 4)
    if fd < 0:
        raise SystemExit("BPF_ENABLE_STATS: " + os.strerror(ctypes.get_errno()))
    print("enabled", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


def bpftool(args, netns=None):
    cmd = (["nsenter", "--net=" + netns] if netns else []) + ["bpftool", "-j"] + args
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out or "null")


def attached(node, found):
    """Every {"id": ..} program entry in bpftool's cgroup/net output, with where it is attached."""
    if isinstance(node, list):
        for x in node:
            attached(x, found)
    elif isinstance(node, dict):
        pid = node.get("id", node.get("prog_id"))
        if isinstance(pid, int) and ("attach_type" in node or "kind" in node or "devname" in node):
            found[pid] = node.get("attach_type") or node.get("kind") or "tc"
        for v in node.values():
            if isinstance(v, (list, dict)):
                attached(v, found)


def show(cgroup, netns=None, dev=None):
    found = {}
    attached(bpftool(["cgroup", "show", cgroup]), found)
    if netns and dev:
        attached(bpftool(["net", "show", "dev", dev], netns), found)
    out = {}
    for pid, where in found.items():
        p = bpftool(["prog", "show", "id", str(pid)])
        out[pid] = {"name": p.get("name", "?"), "attach": where,
                    "run_cnt": p.get("run_cnt", 0), "run_time_ns": p.get("run_time_ns", 0)}
    print(json.dumps(out))


def diff(scale, case, before, after):
    with open(before) as f:
        b = json.load(f)
    with open(after) as f:
        a = json.load(f)
    for pid, p in sorted(a.items(), key=lambda kv: kv[1]["name"]):
        q = b.get(pid, {"run_cnt": 0, "run_time_ns": 0})
        print(f"{scale}\t{case}\t{p['name']}\t{p['attach']}\t{p['run_cnt'] - q['run_cnt']}\t{p['run_time_ns'] - q['run_time_ns']}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"hold": hold, "show": show, "diff": diff}[cmd](*args)
