#!/usr/bin/env python3
"""A fake Kubernetes API server for Veer's tests: the real list/watch protocol, served from
in-memory test data, with faults on demand. Listens on 127.0.0.1 unless --host says otherwise.

  fake_apiserver.py [--host IP] [--port N] [--state FILE.json] [--rv-start N] [--token T] [--exit-with-stdin]
                    [--watch-list on|refuse|ignore] [--warm] [--trace] [--no-gc]

Prints "LISTENING <port>" when ready. State file: {"services": [...], "endpointslices": [...],
"nodes": [...]}; objects get resourceVersions from one counter, as on a real server. Restarting with
--rv-start above the old counter models an API server restart whose event history is gone (any old
resourceVersion gets 410 Expired, the client relists).

Protocol (see /work/shared/reference/kube-api-watch.md): discovery (/api, /apis, /api/v1,
/apis/discovery.k8s.io/v1, /version); list with limit/continue (continue tokens served from a
snapshot), fieldSelector metadata.name/metadata.namespace, labelSelector (key, !key, key=v, key!=v);
watch with resourceVersion (unset/"0": synthetic ADDED first), allowWatchBookmarks, timeoutSeconds,
chunked one-JSON-per-line events, ERROR 410 Expired for compacted resourceVersions; Status bodies
for every error; 401 without the expected bearer token (if --token); 403 per resource on demand.
WatchList (KEP-3157: watch with sendInitialEvents=true&resourceVersionMatch=NotOlderThan): every
object as ADDED, then a BOOKMARK annotated k8s.io/initial-events-end: "true" at the snapshot's
resourceVersion, then changes. --watch-list picks the server: on (1.32, 1.34+), refuse (422, as with
the WatchList gate off, 1.33) or ignore (a server that drops the parameters: a plain watch, no marker).

Served from bytes: each object is encoded once when it changes (its list-item and its event form),
a list's filtered, sorted snapshot is kept until its resource changes, and a page is those bytes
joined; so the server costs little beside the client (the agent benchmark's API server). --warm
builds the snapshots veerd asks for (kube-proxy's label selector) before it prints LISTENING.

Control (tests only): POST /_fake/<action> with a JSON body:
  ping {}                             answers the current resourceVersion
  apply {resource, object}            add or modify (notifies watchers)
  delete {resource, namespace, name}
  silent {on: bool}                   mutations skip the event log and the watchers (as if compacted away)
  compact {}                          forget the event log: older resourceVersions get 410
  close_watches {}                    end every watch cleanly (terminating chunk)
  drop_watches {}                     close every watch connection abruptly
  cut_next_event {resource}           send half of the next event on that resource's watches, then drop
  split {bytes}                       write events in chunks of N bytes (0 = whole)
  inject_raw {resource, line}         write a raw line to that resource's watches
  bookmark {resource}                 send a BOOKMARK at the current resourceVersion
  forbid {resources: [...]}           403 for these resources
  unserve {resources: [...]}          404 for these resources, as a server without the API (ServiceCIDR before 1.33)
  token {token}                       the bearer token required from now on
  watch_http_410 {count}              answer the next N watch requests with HTTP 410
  expire_continue {count}             answer the next N continue requests with 410 Expired
  fail_next {resource, status, retry_after, count}   answer the next N requests with that status
  delay {ms}                          slow down every list and get
  watch_list {mode}                   on | refuse | ignore (see above)
GET /_fake/requests -> every API request seen: {method, path, query, user_agent, authorization}.
GET /_fake/trace (with --trace) -> when each apply was received, applied and answered, when each watch
  event was written, and each garbage collection's pause (time.time() seconds; the agent benchmark
  splits the change latency by hop with it).
POST /api/v1/namespaces/<ns>/events stores an Event; GET /_fake/events lists them.
"""
import argparse
import base64
import copy
import gc
import json
import os
import queue
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESOURCES = {
    # resource: (group-version prefix, kind, namespaced)
    "services": ("/api/v1", "Service", "v1", True),
    "endpointslices": ("/apis/discovery.k8s.io/v1", "EndpointSlice", "discovery.k8s.io/v1", True),
    "nodes": ("/api/v1", "Node", "v1", False),
    "servicecidrs": ("/apis/networking.k8s.io/v1", "ServiceCIDR", "networking.k8s.io/v1", False),
}
GROUP = {"services": "", "endpointslices": "discovery.k8s.io", "nodes": "", "servicecidrs": "networking.k8s.io"}


class World:
    def __init__(self, rv_start, token):
        self.lock = threading.RLock()
        self.rv = rv_start
        self.oldest = rv_start  # resourceVersions below this are compacted away
        self.objects = {r: {} for r in RESOURCES}
        self.log = []  # (rv, resource, type, object)
        self.watchers = []  # (resource, namespace, selector, queue)
        self.silent = False
        self.split = 0
        self.forbidden = set()
        self.unserved = set()
        self.token = token
        self.events = []  # Events posted to /api/v1/namespaces/<ns>/events
        self.watch_http_410 = 0
        self.expire_continue = 0
        self.snapshots = {}
        self.fail_next = {}  # resource -> (count, status, retry_after)
        self.delay = 0.0
        self.requests = []
        self.watch_list = "on"
        self.trace = None  # --trace: {"posts": [[rv, received, applied, answered]], "writes": [[rv, written]], "gc": [...]}
        # Bytes, encoded once per change: resource -> key -> (list item without kind/apiVersion, full object).
        self.encoded = {r: {} for r in RESOURCES}
        self.generation = {r: 0 for r in RESOURCES}  # bumped on every change; invalidates snapshots
        self.cache = {}  # (resource, namespace, fieldSelector, labelSelector) -> (generation, rv, [item bytes])

    def key(self, obj):
        m = obj["metadata"]
        return (m.get("namespace", ""), m["name"])

    def apply(self, resource, obj, notify=True, owned=False):
        with self.lock:
            if not owned:  # the caller keeps its object (owned: it was just decoded for us)
                obj = copy.deepcopy(obj)
            _, kind, api_version, namespaced = RESOURCES[resource]
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", api_version)
            md = obj.setdefault("metadata", {})
            if namespaced:
                md.setdefault("namespace", "default")
            else:
                md.pop("namespace", None)
            k = self.key(obj)
            typ = "MODIFIED" if k in self.objects[resource] else "ADDED"
            self.rv += 1
            md["resourceVersion"] = str(self.rv)
            md.setdefault("uid", "uid-%s-%s-%s" % (resource, k[0], k[1]))
            md.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
            self.objects[resource][k] = obj
            self.encode(resource, k, obj)
            self._event(resource, typ, obj, notify)

    def encode(self, resource, k, obj):
        item = {key: v for key, v in obj.items() if key not in ("kind", "apiVersion")}
        self.encoded[resource][k] = (dumps(item), dumps(obj))
        self.generation[resource] += 1

    def snapshot(self, resource, namespace, sel):
        """The list's items as bytes, sorted by key, and the resourceVersion they are at."""
        key = (resource, namespace, sel[0], sel[1])
        with self.lock:
            hit = self.cache.get(key)
            if hit and hit[0] == self.generation[resource]:
                return hit[1], hit[2]
            enc = self.encoded[resource]
            items = [enc[k][0] for k, o in sorted(self.objects[resource].items()) if matches(o, namespace, sel)]
            rv = str(self.rv)
            self.cache[key] = (self.generation[resource], rv, items)
            return rv, items

    def initial_lines(self, resource, namespace, sel):
        """Every current object as an ADDED event line (bytes), sorted by key."""
        with self.lock:
            enc = self.encoded[resource]
            return [b'{"type":"ADDED","object":' + enc[k][1] + b'}\n'
                    for k, o in sorted(self.objects[resource].items()) if matches(o, namespace, sel)]

    def delete(self, resource, namespace, name):
        with self.lock:
            obj = self.objects[resource].pop((namespace or "", name), None)
            if obj is None:
                return False
            self.encoded[resource].pop((namespace or "", name), None)
            self.generation[resource] += 1
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self._event(resource, "DELETED", obj, True)
            return True

    def _event(self, resource, typ, obj, notify):
        if self.silent:
            return
        ev = {"type": typ, "object": obj}
        self.log.append((self.rv, resource, ev))
        if notify:
            for (res, ns, sel, q) in list(self.watchers):
                if res == resource and matches(obj, ns, sel):
                    q.put(("event", ev))

    def broadcast(self, resource, item):
        with self.lock:
            for (res, ns, sel, q) in list(self.watchers):
                if resource is None or res == resource:
                    q.put(item)


def labels_match(labels, selector):
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        if term.startswith("!"):
            if term[1:] in labels:
                return False
        elif "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            k = k.rstrip("=")
            if labels.get(k) != v:
                return False
        elif labels.get(term) is None:
            return False
    return True


def matches(obj, namespace, sel):
    md = obj.get("metadata", {})
    if namespace and md.get("namespace") != namespace:
        return False
    field, label = sel
    for term in (field or "").split(","):
        if not term:
            continue
        k, _, v = term.partition("=")
        v = v.lstrip("=")
        if k == "metadata.name" and md.get("name") != v:
            return False
        if k == "metadata.namespace" and md.get("namespace") != v:
            return False
    return labels_match(md.get("labels") or {}, label)


def status(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details:
        s["details"] = details
    return s


def truthy(v):
    return v is not None and v.lower() not in ("false", "0")


def dumps(o):
    return json.dumps(o, separators=(",", ":")).encode()


# kube-proxy's selector, the one veerd sends: what --warm prepares.
PROXY_SELECTOR = "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    world = None  # set in main

    def setup(self):
        # Each response and watch event is written in pieces: without this, Nagle's algorithm and
        # the client's delayed ACK hold them back up to 40 ms each (the bench times events).
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if hasattr(self.request, "do_handshake"):
            self.request.settimeout(5)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def log_message(self, fmt, *args):
        pass

    # -- plumbing
    def send_json(self, code, body, extra_headers=None):
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_bytes(self, code, data):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- routing
    def do_POST(self):
        received = time.time()
        u = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        # Events are the one thing a proxy writes (kube-proxy posts them on its Node).
        parts = u.path.strip("/").split("/")
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "events":
            with self.world.lock:
                if self.world.token and self.headers.get("Authorization") != "Bearer " + self.world.token:
                    return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
                ev = dict(body)
                ev.setdefault("metadata", {})["namespace"] = parts[3]
                ev["metadata"]["name"] = ev["metadata"].get("name") or (ev["metadata"].get("generateName", "") + str(len(self.world.events)))
                ev["_user_agent"] = self.headers.get("User-Agent")
                self.world.events.append(ev)
            return self.send_json(201, ev)
        if not u.path.startswith("/_fake/"):
            return self.send_json(405, status(405, "MethodNotAllowed", "the fake only reads"))
        self.control(u.path[len("/_fake/"):], body, received)

    def control(self, action, b, received=0.0):
        w = self.world
        with w.lock:
            if action == "ping":
                pass
            elif action == "apply":
                w.apply(b["resource"], b["object"], owned=True)
            elif action == "delete":
                w.delete(b["resource"], b.get("namespace", ""), b["name"])
            elif action == "silent":
                w.silent = bool(b.get("on", True))
            elif action == "compact":
                w.log = []
                w.oldest = w.rv + 1
            elif action == "close_watches":
                w.broadcast(b.get("resource"), ("close", None))
            elif action == "drop_watches":
                w.broadcast(b.get("resource"), ("drop", None))
            elif action == "cut_next_event":
                w.broadcast(b["resource"], ("cut", None))
            elif action == "split":
                w.split = int(b.get("bytes", 0))
            elif action == "inject_raw":
                w.broadcast(b["resource"], ("raw", b["line"]))
            elif action == "bookmark":
                _, kind, api_version, _ = RESOURCES[b["resource"]]
                w.broadcast(b["resource"], ("event", {"type": "BOOKMARK", "object": {
                    "kind": kind, "apiVersion": api_version,
                    "metadata": {"resourceVersion": str(w.rv), "creationTimestamp": None}, "spec": {}}}))
            elif action == "forbid":
                w.forbidden = set(b.get("resources", []))
            elif action == "unserve":
                w.unserved = set(b.get("resources", []))
            elif action == "token":
                w.token = b.get("token")
            elif action == "watch_http_410":
                w.watch_http_410 = int(b.get("count", 1))
            elif action == "fail_next":
                w.fail_next[b["resource"]] = (int(b.get("count", 1)), int(b["status"]), b.get("retry_after"))
            elif action == "delay":
                w.delay = float(b.get("ms", 0)) / 1000.0
            elif action == "watch_list":
                w.watch_list = b.get("mode", "on")
            elif action == "expire_continue":
                w.expire_continue = int(b.get("count", 1))
            else:
                return self.send_json(404, status(404, "NotFound", "no control action " + action))
            rv = w.rv
            applied = time.time()
        self.send_json(200, {"ok": True, "resourceVersion": str(rv)})
        if w.trace is not None and action == "apply":
            w.trace["posts"].append([rv, received, applied, time.time()])

    def do_GET(self):
        w = self.world
        u = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        path = u.path.rstrip("/") or "/"
        if path == "/_fake/requests":
            with w.lock:
                return self.send_json(200, w.requests)
        if path == "/_fake/events":
            with w.lock:
                return self.send_json(200, w.events)
        if path == "/_fake/trace":
            with w.lock:
                return self.send_json(200 if w.trace is not None else 404, w.trace or status(404, "NotFound", "no --trace"))
        with w.lock:
            w.requests.append({"method": "GET", "path": path, "query": q,
                               "user_agent": self.headers.get("User-Agent"),
                               "authorization": self.headers.get("Authorization"),
                               "accept": self.headers.get("Accept")})
            token = w.token
        if token is not None and self.headers.get("Authorization") != "Bearer " + token:
            return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        port = self.server.server_address[1]
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % port}]})
        if path == "/apis":
            gv = {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "discovery.k8s.io", "versions": [gv], "preferredVersion": gv}]})
        if path == "/api/v1":
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
                {"name": "services", "singularName": "service", "namespaced": True, "kind": "Service",
                 "verbs": ["get", "list", "watch"], "shortNames": ["svc"]},
                {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node",
                 "verbs": ["get", "list", "watch"], "shortNames": ["no"]}]})
        if path == "/apis/discovery.k8s.io/v1":
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                        "groupVersion": "discovery.k8s.io/v1", "resources": [
                {"name": "endpointslices", "singularName": "endpointslice", "namespaced": True,
                 "kind": "EndpointSlice", "verbs": ["get", "list", "watch"]}]})
        if path == "/version":
            return self.send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake",
                                        "platform": "linux/amd64"})
        route = self.route(path)
        if route is None:
            return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
        resource, namespace, name = route
        if resource in w.unserved:
            return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
        if resource in w.forbidden:
            verb = "watch" if truthy(q.get("watch")) else ("get" if name else "list")
            group = GROUP[resource]
            full = resource + ("." + group if group else "")
            scope = ('in the namespace "%s"' % namespace) if namespace else "at the cluster scope"
            return self.send_json(403, status(403, "Forbidden",
                '%s is forbidden: User "system:serviceaccount:kube-system:veer" cannot %s resource "%s" in API group "%s" %s'
                % (full, verb, resource, group, scope), {"group": group, "kind": resource}))
        with w.lock:
            count, code, retry_after = w.fail_next.get(resource, (0, 0, None))
            if count > 0:
                w.fail_next[resource] = (count - 1, code, retry_after)
            delay = w.delay
        if count > 0:
            reasons = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
            return self.send_json(code, status(code, reasons.get(code, "Unknown"), "injected failure"),
                                  {"Retry-After": str(retry_after)} if retry_after is not None else None)
        if delay and not truthy(q.get("watch")):
            time.sleep(delay)  # a slow API server
        if name:
            with w.lock:
                obj = w.objects[resource].get((namespace or "", name))
            if obj is None:
                return self.send_json(404, status(404, "NotFound", '%s "%s" not found' % (resource, name)))
            return self.send_json(200, obj)
        if truthy(q.get("watch")):
            return self.watch(resource, namespace, q)
        return self.list(resource, namespace, q)

    def route(self, path):
        for resource, (prefix, _, _, namespaced) in RESOURCES.items():
            if not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1:].split("/")
            if rest[0] == resource and len(rest) <= 2:
                return resource, "", (rest[1] if len(rest) == 2 else None)
            if namespaced and len(rest) in (3, 4) and rest[0] == "namespaces" and rest[2] == resource:
                return resource, rest[1], (rest[3] if len(rest) == 4 else None)
        return None

    # -- list
    def list(self, resource, namespace, q):
        w = self.world
        _, kind, api_version, _ = RESOURCES[resource]
        sel = (q.get("fieldSelector"), q.get("labelSelector"))
        limit = int(q.get("limit") or 0)
        cont = q.get("continue")
        with w.lock:
            if cont:
                if w.expire_continue > 0:
                    w.expire_continue -= 1
                    s = status(410, "Expired", "The provided continue parameter is too old to display a consistent "
                               "list result. You can start a new list without the continue parameter.")
                    s["metadata"] = {"continue": "inconsistent-token"}
                    return self.send_json(410, s)
                try:
                    token = json.loads(base64.urlsafe_b64decode(cont.encode()))
                    snap_rv, items = w.snapshots[token["snap"]]
                    start = token["start"]
                except Exception:
                    return self.send_json(400, status(400, "BadRequest", "invalid continue token"))
            else:
                snap_rv, items = w.snapshot(resource, namespace, sel)
                start = 0
            page = items[start:start + limit] if limit else items[start:]
            meta = {"resourceVersion": snap_rv}
            nxt = start + len(page)
            if limit and nxt < len(items):
                snap_id = "%s-%d-%d" % (resource, int(snap_rv), id(items))
                w.snapshots[snap_id] = (snap_rv, items)
                meta["continue"] = base64.urlsafe_b64encode(json.dumps({"snap": snap_id, "start": nxt}).encode()).decode()
                meta["remainingItemCount"] = len(items) - nxt
        self.send_bytes(200, b'{"kind":"%sList","apiVersion":"%s","metadata":%s,"items":[%s]}'
                        % (kind.encode(), api_version.encode(), dumps(meta), b",".join(page)))

    # -- watch
    def watch(self, resource, namespace, q):
        w = self.world
        sel = (q.get("fieldSelector"), q.get("labelSelector"))
        rv = q.get("resourceVersion") or ""
        timeout = float(q.get("timeoutSeconds") or 3600)
        bookmarks = truthy(q.get("allowWatchBookmarks"))
        _, kind, api_version, _ = RESOURCES[resource]
        mine = queue.Queue()
        with w.lock:
            if w.watch_http_410 > 0:
                w.watch_http_410 -= 1
                return self.send_json(410, status(410, "Gone", "too old resource version: %s (%d)" % (rv, w.oldest)))
            streaming = "sendInitialEvents" in q and w.watch_list != "ignore"
            if streaming:
                # apiserver's ValidateListOptions (validateWatchOptions), then the WatchList gate.
                problems = []
                if q.get("resourceVersionMatch") != "NotOlderThan":
                    problems.append("resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
                                    "resourceVersionMatch to NotOlderThan")
                if w.watch_list == "refuse":
                    problems.append("sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch "
                                    "unless the WatchList feature gate is enabled")
                if problems:
                    return self.send_json(422, status(422, "Invalid", 'ListOptions.meta.k8s.io "" is invalid: '
                                                      + ", ".join(problems), {"kind": "ListOptions", "group": "meta.k8s.io"}))
                streaming = truthy(q.get("sendInitialEvents"))
            initial = []  # event lines, bytes
            expired = None
            if streaming:
                # Not older than rv: the current state is. Then the marker (only with bookmarks).
                initial = w.initial_lines(resource, namespace, sel)
                if bookmarks:
                    initial.append(dumps({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": api_version,
                        "metadata": {"resourceVersion": str(w.rv), "creationTimestamp": None,
                                     "annotations": {INITIAL_EVENTS_END: "true"}}}}) + b"\n")
            elif rv in ("", "0"):
                initial = w.initial_lines(resource, namespace, sel)
            else:
                try:
                    since = int(rv)
                except ValueError:
                    return self.send_json(400, status(400, "BadRequest", "invalid resourceVersion " + rv))
                if since > w.rv:
                    # The apiserver's watch cache waits up to 3 s for a version it has not seen,
                    # then answers 504 with cause ResourceVersionTooLarge (NewTooLargeResourceVersionError).
                    s = status(504, "Timeout", "Too large resource version: %d, current: %d" % (since, w.rv))
                    s["details"] = {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                                    "retryAfterSeconds": 1}
                    return self.send_json(504, s)
                if since < w.oldest - 1:
                    expired = status(410, "Expired", "too old resource version: %s (%d)" % (rv, w.oldest))
                else:
                    for (erv, res, ev) in w.log:
                        if erv > since and res == resource and matches(ev["object"], namespace, sel):
                            initial.append(dumps(ev) + b"\n")
            entry = (resource, namespace, sel, mine)
            if expired is None:
                w.watchers.append(entry)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            if expired is not None:
                self.write_event({"type": "ERROR", "object": expired})
                self.chunk(b"")
                return
            self.write_lines(initial)
            deadline = time.monotonic() + timeout
            cut = False
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    what, arg = mine.get(timeout=min(left, 0.5))
                except queue.Empty:
                    continue
                if what == "event":
                    if arg["type"] == "BOOKMARK" and not bookmarks:
                        continue
                    if cut:
                        data = (json.dumps(arg, separators=(",", ":")) + "\n").encode()
                        self.chunk(data[: len(data) // 2])
                        self.drop()
                        return
                    self.write_event(arg)
                    if w.trace is not None:
                        w.trace["writes"].append([int(arg["object"]["metadata"].get("resourceVersion") or 0), time.time()])
                elif what == "raw":
                    self.chunk(arg.encode() + b"\n")
                elif what == "cut":
                    cut = True
                elif what == "close":
                    break
                elif what == "drop":
                    self.drop()
                    return
            self.chunk(b"")  # clean end
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with w.lock:
                if entry in w.watchers:
                    w.watchers.remove(entry)

    def write_event(self, ev):
        self.write_line(dumps(ev) + b"\n")

    def write_lines(self, lines):
        """Initial events: whole lines in chunks of about 256 KiB (unless split asks for less)."""
        if self.world.split > 0:
            for line in lines:
                self.write_line(line)
            return
        batch, size = [], 0
        for line in lines:
            batch.append(line)
            size += len(line)
            if size >= 256 << 10:
                self.chunk(b"".join(batch))
                batch, size = [], 0
        if batch:
            self.chunk(b"".join(batch))

    def write_line(self, data):
        n = self.world.split
        if n <= 0:
            self.chunk(data)
        else:
            for i in range(0, len(data), n):
                self.chunk(data[i:i + n])

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (the cluster tests: the bridge's, in its namespace)")
    ap.add_argument("--state")
    ap.add_argument("--rv-start", type=int, default=1000)
    ap.add_argument("--token")
    ap.add_argument("--tls-cert", help="serve https with this certificate (PEM) ...")
    ap.add_argument("--tls-key", help="... and key")
    ap.add_argument("--client-ca", help="require client certificates signed by this CA")
    ap.add_argument("--exit-with-stdin", action="store_true", help="exit when stdin closes (the test runner died)")
    ap.add_argument("--watch-list", choices=["on", "refuse", "ignore"], default="on",
                    help="WatchList (sendInitialEvents): served, refused with 422, or ignored")
    ap.add_argument("--warm", action="store_true", help="build veerd's list snapshots before listening")
    ap.add_argument("--no-gc", action="store_true", help="no cyclic garbage collection after the load (a benchmark's server)")
    ap.add_argument("--trace", action="store_true", help="record each change's times and GC pauses (GET /_fake/trace)")
    a = ap.parse_args()
    world = World(a.rv_start, a.token)
    world.watch_list = a.watch_list
    # The cyclic GC against a heap of millions of objects (50,000 slices are 1.7 million dicts
    # and lists): a full collection walks all of them, 1-5 s here, and every watch event and
    # answer waits behind it (the agent bench's change-latency tail). The state has no cycles
    # to find: load it with the collector off, then freeze it (the permanent generation), and
    # after each full collection freeze what survived, so a collection walks only what is new
    # since the last one. Garbage here is freed by reference counting. --no-gc (the agent
    # benchmark) leaves the collector off after the load: even the changes of one churn add
    # enough objects that a full collection pauses the server 50-350 ms.
    gc.disable()
    if a.state:
        with open(a.state) as f:
            st = json.load(f)
        for resource in RESOURCES:
            for obj in st.get(resource, []):
                world.apply(resource, obj, owned=True)
        world.oldest = world.rv + 1 - sum(len(st.get(r, [])) for r in RESOURCES)
        del st
    if a.warm:
        for resource in ("services", "endpointslices"):
            world.snapshot(resource, "", (None, PROXY_SELECTOR))
    gc.freeze()
    gc.callbacks.append(lambda phase, info: gc.freeze() if phase == "stop" and info["generation"] == 2 else None)
    if not a.no_gc:
        gc.enable()
    if a.trace:
        world.trace = {"posts": [], "writes": [], "gc": []}
        started = {}

        def on_gc(phase, info):
            if phase == "start":
                started["t"] = time.time()
            else:
                world.trace["gc"].append([info["generation"], started.get("t", 0.0), time.time()])
        gc.callbacks.append(on_gc)
    Handler.world = world
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    # socketserver's default backlog is 5. Three agents open about fifteen list and watch
    # connections at once; on a loaded machine the accept loop falls behind, the kernel drops
    # SYNs past the backlog, and a client's retransmits back off past its connect timeout.
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer((a.host, a.port), Handler)
    default_handle_error = server.handle_error

    def handle_error(request, client_address):
        import ssl
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            return  # refused handshakes are what the TLS tests expect
        default_handle_error(request, client_address)
    server.handle_error = handle_error
    if a.tls_cert:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        if a.client_ca:
            ctx.load_verify_locations(a.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        # The handshake runs in the handler thread, so a failed one does not stop the server.
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    print("LISTENING %d" % server.server_address[1], flush=True)

    def exit_with_parent():
        # The test process holds our stdin; when it goes (even killed), so do we.
        try:
            sys.stdin.read()
        finally:
            os._exit(0)
    if a.exit_with_stdin:
        threading.Thread(target=exit_with_parent, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
