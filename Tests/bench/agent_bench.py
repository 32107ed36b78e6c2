#!/usr/bin/env python3
"""The control plane through the real agent: veerd against the fake API server
(Tests/VeerKubeTests/fake_apiserver.py, the real list/watch protocol), both started here.
The server serves pre-encoded bytes (--warm builds veerd's list snapshots before the clock starts)
with its cyclic GC off (--no-gc: a full collection paused it 0.3-5 s), so it is not the bottleneck; its own time is measured apart, with no agent (below).
BENCH_WATCH_LIST=off|on|refuse (default off): veerd lists and watches (its default); or runs with
--watch-list against a server that streams the initial list (WatchList), or that refuses it with
422 as Kubernetes 1.33 does (then veerd lists and watches after one refused request per kind).

  agent_bench.py VEERD BPF_OBJECT CGROUP PIN_ROOT SERVICES[xENDPOINTS] RATE SECONDS

Run it inside a network namespace of its own (run.sh uses nsenter --net): the fake API server
and veerd's metrics listen on that namespace's 127.0.0.1 only.

0. The server alone: every list page veerd asks for (limit=500, kube-proxy's selector) fetched
   with curl, one after another (api_list_s: the sum of curl's time_total; api_list_wall_s with
   curl's start-up), and each kind's WatchList stream read to its initial-events-end bookmark
   (api_stream_s, the two kinds one after another).
1. List: SERVICES ClusterIP services, one EndpointSlice of ENDPOINTS (10) ready endpoints each, and the Node.
   Timed from veerd's start to its "full sync:" log line (the maps written), plus the agent's
   own split of that sync (select, read+plan, write); peak RSS from /proc/PID/status VmHWM.
2. Churn: at RATE changes/s for SECONDS, one endpoint of one random slice moves to a fresh
   address (POST to the fake server, which sends the watch event). Each slice carries
   endpoints.kubernetes.io/last-change-trigger-time = the moment before the POST (RFC 3339
   with microseconds, as the EndpointSlice controller writes it), so the agent's
   veer_network_programming_duration_seconds histogram measures change -> fake API server ->
   watch -> decode -> select -> plan -> map write, as kube-proxy defines it.
   veer_programming_latency_seconds (event in the agent -> maps) and veer_sync_duration_seconds
   are reported too. Quantiles are interpolated within the histogram buckets, as Prometheus'
   histogram_quantile does; le5ms is exact (a bucket bound). The harness's own share is
   measured per change from the server's trace (--trace; hop_* and harness_*, see hops()).
3. Memory apart from the /metrics scrapes: VmRSS/VmHWM before and after the scrape that
   precedes the churn (rss_/hwm_prescrape, _scrape1), the largest VmRSS sampled during the churn
   (rss_churn_max), both after it (rss_/hwm_churned), and after the last scrape (rss_now_end;
   rss_end is the peak, VmHWM).
4. The churn again (same rate and length) while a thread scrapes /metrics every
   BENCH_SCRAPE_EVERY seconds (default 2), reading the whole text as Prometheus does: change →
   maps with scrapes (scraped_np_*, scraped_prog_p99, scraped_sync_p99), the harness's own p99
   in it, and the scrapes' times as the client saw them (scraped_scrape_p50_s/_max_s). A scrape
   must never delay a change.

For a closer look at one run (not used by make bench):
  BENCH_TRACE_OUT=FILE  the harness's trace per change: rv, stamp, received, applied, written
  BENCH_STRACE=FILE     strace of veerd during the churn (its stream reads, with the event bytes,
                        and its map writes), to join with BENCH_TRACE_OUT on the resourceVersion
  BENCH_HEAPTRACK=DIR   heaptrack attached to veerd after the list (the scrapes and the churn);
                        veerd then ends with SIGTERM so heaptrack finishes its file there
  BENCH_SMAPS=FILE      a copy of veerd's /proc/PID/smaps after the list (where its RSS is)

Prints one line: "veer-agent key=value ...". Kills what it started, by pid; the caller removes
the pins and the cgroup (veerd leaves the datapath attached on purpose).
"""
import datetime, gc, http.client, ipaddress, json, os, random, re, signal, shutil, socket, subprocess, sys, tempfile, threading, time
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
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def memory(pid):
    """(VmRSS, VmHWM) in MB: now, and the peak so far."""
    return rss_mb(pid, "VmRSS"), rss_mb(pid, "VmHWM")


def pct(values, q):
    """The q-quantile of raw samples (nearest rank), in ms."""
    if not values:
        return float("nan")
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 2)


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


def max_le(buckets):
    """The smallest bucket bound holding every observation (ms): a bound on the slowest, which
    p99 misses when only a few (one per scrape) are slow."""
    total = buckets[-1][1] if buckets else 0
    for b, n in buckets:
        if n >= total:
            return b * 1000
    return float("nan")


def over(buckets, bound):
    """How many observations exceeded a bucket bound (s)."""
    total = buckets[-1][1] if buckets else 0
    for b, n in buckets:
        if abs(b - bound) < 1e-12:
            return int(total - n)
    return -1


def le(buckets, bound):
    total = buckets[-1][1] if buckets else 0
    for b, n in buckets:
        if abs(b - bound) < 1e-12:
            return n / total if total else float("nan")
    return float("nan")


def hops(port, stamps):
    """The harness's side of change → maps, per change (joined on its resourceVersion): stamp →
    POST received by the server (the driver's encoding, HTTP, the handler thread's start) →
    applied (decode, store, encode, queue) → watch event written to veerd's stream; then the
    harness's whole share (stamp → written), how many changes it alone kept past 5 ms, the
    server's garbage collections in the churn, and the bias of veerd's ms-precision stamp parse."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/_fake/trace")
    trace = json.loads(c.getresponse().read())
    c.close()
    posts = {rv: (rec, app) for rv, rec, app, _ in trace["posts"]}
    written = {}
    for rv, t in trace["writes"]:
        written.setdefault(rv, t)  # the EndpointSlice watch: the one stream that carries the change
    post, apply_, write, harness = [], [], [], []
    for rv, t in stamps.items():
        if rv in posts and rv in written:
            rec, app = posts[rv]
            post.append(rec - t); apply_.append(app - rec); write.append(written[rv] - app); harness.append(written[rv] - t)
    if os.environ.get("BENCH_TRACE_OUT"):  # per change, for a look (e.g. joined with an strace of veerd)
        with open(os.environ["BENCH_TRACE_OUT"], "w") as f:
            for rv, t in sorted(stamps.items()):
                if rv in posts and rv in written:
                    f.write(f"{rv}\t{t:.6f}\t{posts[rv][0]:.6f}\t{posts[rv][1]:.6f}\t{written[rv]:.6f}\n")
    t0, t1 = min(stamps.values(), default=0), max(stamps.values(), default=0)
    gcs = [(g, b, e) for g, b, e in trace["gc"] if t0 <= b <= t1 + 2]
    return {"traced": len(harness),
            "hop_post_p50_ms": pct(post, 0.5), "hop_post_p99_ms": pct(post, 0.99),
            "hop_apply_p50_ms": pct(apply_, 0.5), "hop_apply_p99_ms": pct(apply_, 0.99),
            "hop_write_p50_ms": pct(write, 0.5), "hop_write_p99_ms": pct(write, 0.99),
            "harness_p50_ms": pct(harness, 0.5), "harness_p99_ms": pct(harness, 0.99),
            "harness_over5ms": sum(1 for h in harness if h > 0.005),
            "server_gc2": sum(1 for g, _, _ in gcs if g == 2),
            "server_gc_max_ms": round(max((e - b for _, b, e in gcs), default=0) * 1000, 2)}


def churn(api, rng, addresses, n, eps, rate, seconds, fresh, pid):
    """One endpoint of one random service moves, at most `rate` times a second, for `seconds`.
    Returns the changes made, the rate achieved, each change's stamp by resourceVersion and the
    largest VmRSS sampled."""
    start, k = time.time(), 0
    stamps = {}  # resourceVersion -> the stamp's exact time
    rss_churn, sampled = 0.0, start
    while time.time() - start < seconds:
        due = start + k / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        i = rng.randrange(n)
        addresses[i][rng.randrange(eps)] = str(ipaddress.IPv4Address(fresh[0]))
        fresh[0] += 1
        # RFC 3339 with microseconds, as the EndpointSlice controller writes it (RFC3339Nano).
        now = time.time()
        stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = json.dumps({"resource": "endpointslices", "object": slice_(i, addresses[i], stamp)})
        api.request("POST", "/_fake/apply", body, {"Content-Type": "application/json"})
        stamps[int(json.loads(api.getresponse().read())["resourceVersion"])] = now
        k += 1
        if now - sampled >= 0.5:
            rss_churn, sampled = max(rss_churn, rss_mb(pid, "VmRSS")), now
    return k, k / (time.time() - start), stamps, rss_churn


def scraper(every, stop, times):
    """Scrapes /metrics every `every` seconds until `stop` is set, as Prometheus does: the whole
    text read (not parsed here: Prometheus parses in its own process), each scrape's time kept."""
    nxt = time.time()
    while not stop.wait(max(0.0, nxt - time.time())):
        t = time.time()
        c = http.client.HTTPConnection("127.0.0.1", METRICS_PORT, timeout=120)
        c.request("GET", "/metrics")
        r = c.getresponse()
        while r.read(1 << 20):
            pass
        c.close()
        times.append(time.time() - t)
        nxt = t + every


def main():
    veerd, obj, cgroup, pins, n, rate, seconds = sys.argv[1:8]
    # SERVICES, or SERVICESxENDPOINTS (issue 16's 100000x5 column); 10 endpoints per slice by default.
    n, _, eps = n.partition("x")
    n, eps, rate, seconds = int(n), int(eps or 10), float(rate), float(seconds)
    if not 1 <= eps <= 10:
        raise SystemExit("ENDPOINTS must be 1..10 (one slice per service, addresses 10 apart)")
    work = tempfile.mkdtemp(prefix="veer-agent-bench-")
    procs = []
    tracer = []  # heaptrack, if BENCH_HEAPTRACK: it ends after veerd
    result = {"services": n, "endpoints": eps}
    try:
        addresses = {i: [ep(i, j) for j in range(eps)] for i in range(n)}
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
                                 "--trace", "--no-gc", "--exit-with-stdin"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(fake)
        line = fake.stdout.readline()
        if not line.startswith("LISTENING "):
            raise SystemExit("fake API server did not start")
        port = int(line.split()[1])
        result["api_list_s"], result["api_list_wall_s"], result["api_pages"], _ = serve_lists(port, work)
        result["api_stream_s"] = serve_streams(port)

        cap = int(n * (eps + 1) * 1.25) + 4096
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
        if os.environ.get("BENCH_SMAPS"):  # where the RSS is, mapping by mapping, for a look
            shutil.copy(f"/proc/{agent.pid}/smaps", os.environ["BENCH_SMAPS"])
        if os.environ.get("BENCH_HEAPTRACK"):
            # A profile of what veerd allocates from here on (the scrapes and the churn): heaptrack
            # attached to the running veerd, its file written into that directory when veerd ends.
            ht = subprocess.Popen(["heaptrack", "-p", str(agent.pid)], cwd=os.environ["BENCH_HEAPTRACK"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            tracer.append(ht)
            for line in ht.stdout:
                print("heaptrack: " + line.rstrip(), file=sys.stderr, flush=True)
                if "injection finished" in line or "heaptrack stats" in line:
                    break
        # Memory, apart from the /metrics scrapes (a scrape of every endpoint's series is tens of MB
        # at 10,000 services): VmRSS now and VmHWM (the peak so far) before and after each scrape,
        # and the largest VmRSS sampled during the churn, which runs between the two scrapes.
        result["rss_prescrape_mb"], result["hwm_prescrape_mb"] = memory(agent.pid)
        before = metrics()
        result["rss_scrape1_mb"], result["hwm_scrape1_mb"] = memory(agent.pid)
        frontends = before.get("veer_frontends", 0)
        if frontends != n:
            raise SystemExit(f"veer_frontends={frontends}, expected {n}")

        # Churn: one endpoint of one random service moves, at most `rate` times a second.
        api = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        api.connect()
        api.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rng = random.Random(7)
        gc.freeze()  # the addresses of every slice: no full collection walks them between two changes
        strace = None
        if os.environ.get("BENCH_STRACE"):
            # veerd's side of each change: when its stream read the event and when the map writes
            # followed (join with BENCH_TRACE_OUT on the resourceVersion in the read's bytes).
            strace = subprocess.Popen(["strace", "-f", "-qq", "-ttt", "--seccomp-bpf", "-e", "trace=read,bpf,openat,rename",
                                       "-s", "1200", "-o", os.environ["BENCH_STRACE"], "-p", str(agent.pid)])
            tracer.append(strace)
            time.sleep(2)
        fresh = [0x0B000000]  # the next fresh address, across both churns
        k, achieved, stamps, rss_churn = churn(api, rng, addresses, n, eps, rate, seconds, fresh, agent.pid)
        time.sleep(2)  # let the last changes land
        if strace:
            strace.send_signal(signal.SIGINT)
            strace.wait()
        result["rss_churn_max_mb"] = rss_churn
        result["rss_churned_mb"], result["hwm_churned_mb"] = memory(agent.pid)
        after = metrics()
        result.update(hops(port, stamps))
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
            backends=int(after.get("veer_backends", 0)), errors=int(after.get("veer_sync_errors_total", 0)))
        result["rss_now_end_mb"], result["rss_end_mb"] = memory(agent.pid)
        # Every change reached veerd's stream (the server wrote each one as a watch event).
        if result["traced"] < k:
            raise SystemExit(f"the server's trace holds {result['traced']} of {k} changes written to the watch")
        # Every moved endpoint replaced one backend: the count must not drift.
        if result["backends"] != n * eps:
            raise SystemExit(f"veer_backends={result['backends']} after the churn, expected {n * eps}")
        # 4. The same churn again while a Prometheus scrapes /metrics every SCRAPE_EVERY s (a
        # thread of its own): a scrape must never delay a change. After every figure above, so
        # those stay as they were measured without scrapes (the peak RSS included).
        every = float(os.environ.get("BENCH_SCRAPE_EVERY", "2"))
        stop, times = threading.Event(), []
        thread = threading.Thread(target=scraper, args=(every, stop, times), daemon=True)
        thread.start()
        k2, achieved2, stamps2, _ = churn(api, rng, addresses, n, eps, rate, seconds, fresh, agent.pid)
        stop.set()
        thread.join()
        time.sleep(2)  # let the last changes land
        scraped = metrics()
        traced2 = hops(port, stamps2)
        np2 = histogram(scraped, after, "veer_network_programming_duration_seconds")
        pl2 = histogram(scraped, after, "veer_programming_latency_seconds")
        sd2 = histogram(scraped, after, "veer_sync_duration_seconds")
        result.update(
            scraped_every_s=every, scraped_scrapes=len(times),
            scraped_scrape_p50_s=round(sorted(times)[len(times) // 2], 3) if times else float("nan"),
            scraped_scrape_max_s=round(max(times), 3) if times else float("nan"),
            scraped_changes=k2, scraped_rate=round(achieved2, 1),
            scraped_np_p50_ms=round(quantile(np2, 0.5), 2), scraped_np_p99_ms=round(quantile(np2, 0.99), 2),
            scraped_np_le5ms=round(le(np2, 0.005), 4),
            scraped_prog_p99_ms=round(quantile(pl2, 0.99), 2), scraped_sync_p99_ms=round(quantile(sd2, 0.99), 2),
            np_max_le_ms=max_le(np_), sync_max_le_ms=max_le(sd),
            scraped_np_max_le_ms=max_le(np2), scraped_sync_max_le_ms=max_le(sd2),
            sync_over10ms=over(sd, 0.01), scraped_sync_over10ms=over(sd2, 0.01),
            scraped_harness_p99_ms=traced2["harness_p99_ms"])
        if int(scraped.get("veer_backends", 0)) != n * eps:
            raise SystemExit(f"veer_backends={scraped.get('veer_backends')} after the scraped churn, expected {n * eps}")
        print("veer-agent " + " ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    finally:
        if os.environ.get("BENCH_AGENT_LOG"):  # keep veerd's log (its stage timings) for a look
            subprocess.run(["cp", os.path.join(work, "veerd.log"), os.environ["BENCH_AGENT_LOG"]])
        for p in reversed(procs):
            if p.poll() is None and tracer:
                p.send_signal(signal.SIGTERM)  # veerd ends cleanly: heaptrack finishes its file
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        for p in tracer:
            try:
                p.communicate(timeout=300)  # heaptrack interprets and compresses its data
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
