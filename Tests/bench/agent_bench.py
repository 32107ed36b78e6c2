#!/usr/bin/env python3
"""The control plane through the real agent: veerd against the fake API server
(Tests/VeerKubeTests/fake_apiserver.py, the real list/watch protocol), both started here.
The server serves pre-encoded bytes (--warm builds veerd's list snapshots before the clock starts),
so it is not the bottleneck; its own time is measured apart, with no agent (below).
BENCH_WATCH_LIST=off|on|refuse (default off): veerd lists and watches (its default); or runs with
--watch-list against a server that streams the initial list (WatchList), or that refuses it with
422 as Kubernetes 1.33 does (then veerd lists and watches after one refused request per kind).

  agent_bench.py VEERD BPF_OBJECT CGROUP PIN_ROOT SERVICES RATE SECONDS

Run it inside a network namespace of its own (run.sh uses nsenter --net): the fake API server
and veerd's metrics listen on that namespace's 127.0.0.1 only.

0. The server alone: every list page veerd asks for (limit=500, kube-proxy's selector) fetched
   with curl, one after another (api_list_s: the sum of curl's time_total; api_list_wall_s with
   curl's start-up), and each kind's WatchList stream read to its initial-events-end bookmark
   (api_stream_s, the two kinds one after another).
1. List: SERVICES ClusterIP services, one EndpointSlice of 10 ready endpoints each, and the Node.
   Timed from veerd's start to its "full sync:" log line (the maps written), plus the agent's
   own split of that sync (select, read+plan, write); peak RSS from /proc/PID/status VmHWM.
2. Churn: at RATE changes/s for SECONDS, one endpoint of one random slice moves to a fresh
   address (POST to the fake server, which sends the watch event). Each slice carries
   endpoints.kubernetes.io/last-change-trigger-time = the moment before the POST (ms
   precision), so the agent's veer_network_programming_duration_seconds histogram measures
   change -> fake API server -> watch -> decode -> select -> plan -> map write, as kube-proxy
   defines it. veer_programming_latency_seconds (event in the agent -> maps) and
   veer_sync_duration_seconds are reported too. Quantiles are interpolated within the
   histogram buckets, as Prometheus' histogram_quantile does; le5ms is exact (a bucket bound).

Prints one line: "veer-agent key=value ...". Kills what it started, by pid; the caller removes
the pins and the cgroup (veerd leaves the datapath attached on purpose).
"""
import datetime, http.client, ipaddress, json, os, random, re, signal, socket, subprocess, sys, tempfile, time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "..", "VeerKubeTests", "fake_apiserver.py")
NODE = "bench-node"
METRICS_PORT = 9965
SELECTOR = "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"
PATHS = ("/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices")


def serve_lists(port, work):
    """The server's own time for veerd's list requests: every page, fetched with curl."""
    page = os.path.join(work, "page")
    total, pages, size, t0 = 0.0, 0, 0, time.time()
    for path in PATHS:
        cont = None
        while True:
            q = {"labelSelector": SELECTOR, "limit": "500"}
            if cont:
                q["continue"] = cont
            r = subprocess.run(["curl", "-sS", "-o", page, "-w", "%{time_total} %{size_download}",
                                f"http://127.0.0.1:{port}{path}?" + urllib.parse.urlencode(q)],
                               capture_output=True, text=True, check=True)
            t, n = r.stdout.split()
            total, pages, size = total + float(t), pages + 1, size + int(n)
            with open(page, "rb") as f:
                m = re.search(rb'"continue":"([^"]*)"', f.read(4096))  # metadata comes before the items
            cont = m.group(1).decode() if m else None
            if not cont:
                break
    return round(total, 3), round(time.time() - t0, 3), pages, size


def serve_streams(port):
    """The server's own time for veerd's WatchList requests: each stream read to its marker."""
    t0 = time.time()
    for path in PATHS:
        q = urllib.parse.urlencode({"allowWatchBookmarks": "true", "labelSelector": SELECTOR,
                                    "resourceVersionMatch": "NotOlderThan", "sendInitialEvents": "true",
                                    "timeoutSeconds": "60", "watch": "true"})
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(f"GET {path}?{q} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n".encode())
            tail = b""
            while b"k8s.io/initial-events-end" not in tail:
                data = s.recv(1 << 20)
                if not data:
                    raise SystemExit(f"the {path} stream ended before its initial-events-end bookmark")
                tail = tail[-64:] + data
    return round(time.time() - t0, 3)


def vip(i): return str(ipaddress.IPv4Address(0x0A600001 + i))
def ep(i, j): return str(ipaddress.IPv4Address(0x0A800100 + i * 10 + j))


def service(i):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"svc-{i}", "namespace": "bench"},
            "spec": {"type": "ClusterIP", "clusterIP": vip(i), "clusterIPs": [vip(i)],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}


def endpoint(ip, j):
    return {"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": f"node-{j}", "targetRef": {"kind": "Pod", "namespace": "bench", "name": f"pod-{ip}"}}


def slice_(i, addresses, stamp=None):
    meta = {"name": f"svc-{i}-1", "namespace": "bench", "labels": {"kubernetes.io/service-name": f"svc-{i}"}}
    if stamp:
        meta["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": stamp}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [endpoint(a, j) for j, a in enumerate(addresses)]}


def rss_mb(pid, field="VmHWM"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def metrics():
    c = http.client.HTTPConnection("127.0.0.1", METRICS_PORT, timeout=120)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def histogram(after, before, name):
    """Bucket bounds and counts of the observations between two scrapes."""
    buckets = []
    for key, v in after.items():
        m = re.fullmatch(re.escape(name) + r'_bucket\{le="([^"]+)"\}', key)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets.append((le, v - before.get(key, 0)))
    buckets.sort()
    return buckets


def quantile(buckets, q):
    """histogram_quantile: linear within the bucket holding the q-th observation (ms)."""
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return float("nan")
    rank, lo, prev = q * total, 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return lo * 1000
            return (lo + (le - lo) * (rank - prev) / max(n - prev, 1e-9)) * 1000
        lo, prev = le, n
    return lo * 1000


def le(buckets, bound):
    total = buckets[-1][1] if buckets else 0
    for b, n in buckets:
        if abs(b - bound) < 1e-12:
            return n / total if total else float("nan")
    return float("nan")


def main():
    veerd, obj, cgroup, pins, n, rate, seconds = sys.argv[1:8]
    n, rate, seconds = int(n), float(rate), float(seconds)
    work = tempfile.mkdtemp(prefix="veer-agent-bench-")
    procs = []
    result = {"services": n}
    try:
        addresses = {i: [ep(i, j) for j in range(10)] for i in range(n)}
        state = {"services": [service(i) for i in range(n)],
                 "endpointslices": [slice_(i, addresses[i]) for i in range(n)],
                 "nodes": [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": {}},
                            "status": {"addresses": [{"type": "InternalIP", "address": "10.200.0.1"}]}}]}
        with open(os.path.join(work, "state.json"), "w") as f:
            json.dump(state, f)
        del state
        watch_list = os.environ.get("BENCH_WATCH_LIST", "off")
        result["watch_list"] = watch_list
        fake = subprocess.Popen([sys.executable, FAKE, "--port", "0", "--state", os.path.join(work, "state.json"),
                                 "--warm", "--watch-list", "refuse" if watch_list == "refuse" else "on",
                                 "--exit-with-stdin"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(fake)
        line = fake.stdout.readline()
        if not line.startswith("LISTENING "):
            raise SystemExit("fake API server did not start")
        port = int(line.split()[1])
        result["api_list_s"], result["api_list_wall_s"], result["api_pages"], _ = serve_lists(port, work)
        result["api_stream_s"] = serve_streams(port)

        cap = int(n * 11 * 1.25) + 4096
        log_path = os.path.join(work, "veerd.log")
        log = open(log_path, "w")
        t0 = time.time()
        agent = subprocess.Popen([veerd, "--api-server", f"http://127.0.0.1:{port}", "--node-name", NODE,
                                  "--cgroup", cgroup, "--bpffs", pins, "--bpf-object", obj,
                                  "--metrics-address", f"127.0.0.1:{METRICS_PORT}",
                                  "--max-service-entries", str(cap), "--max-backends", str(cap),
                                  "--max-members", str(cap)] + (["--watch-list"] if watch_list != "off" else []),
                                 stdout=log, stderr=log)
        procs.append(agent)
        synced_line, listed_at = None, None
        deadline = t0 + 180
        while time.time() < deadline and agent.poll() is None:
            with open(log_path) as f:
                text = f.read()
            if listed_at is None and "source synced" in text:
                listed_at = time.time()
            m = re.search(r"full sync: .*", text)
            if m:
                synced_line = m.group(0)
                break
            time.sleep(0.01)
        t1 = time.time()
        if synced_line is None:
            raise SystemExit(f"veerd did not sync in time (rc={agent.poll()}): " + open(log_path).read()[-600:])
        nums = dict(re.findall(r"(select|read\+plan|write) ([0-9.]+) ms", synced_line))
        decoded = sum(float(x) for x in re.findall(r"objects: decoded and stored in ([0-9.]+) ms", open(log_path).read()))
        result["decode_ms"] = round(decoded, 1)
        # The server's share of start → maps: what it takes alone to serve what veerd asked for
        # (the pages one after another as veerd fetches them; or the streams, read to their markers).
        server = result["api_stream_s"] if watch_list == "on" else result["api_list_s"]
        result.update(list_to_maps_s=round(t1 - t0, 3),
                      start_to_listed_s=round((listed_at or t1) - t0, 3),
                      listed_to_maps_s=round(t1 - (listed_at or t1), 3),
                      server_share_s=server, agent_share_s=round(t1 - t0 - server, 3),
                      select_ms=nums.get("select"), plan_ms=nums.get("read+plan"), write_ms=nums.get("write"),
                      rss_sync_mb=round(rss_mb(agent.pid), 1))
        time.sleep(2)  # the names and decisions files are written after the sync, off the loop
        before = metrics()
        frontends = before.get("veer_frontends", 0)
        if frontends != n:
            raise SystemExit(f"veer_frontends={frontends}, expected {n}")

        # Churn: one endpoint of one random service moves, at most `rate` times a second.
        api = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        api.connect()
        api.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rng = random.Random(7)
        start, k, fresh = time.time(), 0, 0x0B000000
        while time.time() - start < seconds:
            due = start + k / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            i = rng.randrange(n)
            addresses[i][rng.randrange(10)] = str(ipaddress.IPv4Address(fresh + k))
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            body = json.dumps({"resource": "endpointslices", "object": slice_(i, addresses[i], stamp)})
            api.request("POST", "/_fake/apply", body, {"Content-Type": "application/json"})
            api.getresponse().read()
            k += 1
        achieved = k / (time.time() - start)
        time.sleep(2)  # let the last changes land
        after = metrics()
        np_ = histogram(after, before, "veer_network_programming_duration_seconds")
        pl = histogram(after, before, "veer_programming_latency_seconds")
        sd = histogram(after, before, "veer_sync_duration_seconds")
        result.update(
            changes=k, rate=round(achieved, 1),
            observed=int(np_[-1][1]) if np_ else 0,
            np_p50_ms=round(quantile(np_, 0.5), 2), np_p99_ms=round(quantile(np_, 0.99), 2),
            np_le5ms=round(le(np_, 0.005), 4),
            prog_p50_ms=round(quantile(pl, 0.5), 2), prog_p99_ms=round(quantile(pl, 0.99), 2),
            sync_p50_ms=round(quantile(sd, 0.5), 2), sync_p99_ms=round(quantile(sd, 0.99), 2),
            syncs=int(after.get("veer_syncs_total", 0) - before.get("veer_syncs_total", 0)),
            map_ops=int(after.get("veer_map_operations_total", 0) - before.get("veer_map_operations_total", 0)),
            backends=int(after.get("veer_backends", 0)), errors=int(after.get("veer_sync_errors_total", 0)),
            rss_end_mb=round(rss_mb(agent.pid), 1))
        # Every moved endpoint replaced one backend: the count must not drift.
        if result["backends"] != n * 10:
            raise SystemExit(f"veer_backends={result['backends']} after the churn, expected {n * 10}")
        print("veer-agent " + " ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    finally:
        if os.environ.get("BENCH_AGENT_LOG"):  # keep veerd's log (its stage timings) for a look
            subprocess.run(["cp", os.path.join(work, "veerd.log"), os.environ["BENCH_AGENT_LOG"]])
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
