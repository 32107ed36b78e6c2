#!/usr/bin/env python3
"""Runs the official Python `kubernetes` client against the fake API server and prints what it
saw as JSON lines, for RealClientTests to compare with Veer's own source:

  {"list": "services", "keys": [...], "resourceVersion": "..."}      (paginated, limit=1)
  {"list": "endpointslices", "keys": [...]}                          (models must decode)
  {"list": "nodes", "keys": [...]}                                   (fieldSelector)
  {"watch": "services", "type": "...", "key": "ns/name", "rv": "..."} (from --rv, until timeout)
  {"initial": "services", "type": "ADDED", "key": ...}               (watch=True, no RV: synthetic ADDED)
  {"watchlist": "services", "type": "ADDED"|"BOOKMARK", "key": ..., "end": bool}
                                     (send_initial_events=True: ADDED each, then the initial-events-end bookmark)
"""
import argparse
import json
import sys

from kubernetes import client, watch


def key(obj):
    md = obj.metadata
    return "%s/%s" % (md.namespace, md.name) if md.namespace else md.name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--rv", required=True)
    ap.add_argument("--node", default="node-a")
    a = ap.parse_args()
    conf = client.Configuration()
    conf.host = a.server
    api_client = client.ApiClient(conf)
    v1 = client.CoreV1Api(api_client)
    disc = client.DiscoveryV1Api(api_client)

    keys, cont, rv = [], None, None
    while True:
        page = v1.list_service_for_all_namespaces(limit=1, _continue=cont) if cont else \
            v1.list_service_for_all_namespaces(limit=1)
        rv = rv or page.metadata.resource_version
        keys += [key(s) for s in page.items]
        cont = page.metadata._continue
        if not cont:
            break
    print(json.dumps({"list": "services", "keys": sorted(keys), "resourceVersion": rv}), flush=True)
    slices = disc.list_endpoint_slice_for_all_namespaces()
    print(json.dumps({"list": "endpointslices", "keys": sorted(key(s) for s in slices.items)}), flush=True)
    nodes = v1.list_node(field_selector="metadata.name=" + a.node)
    print(json.dumps({"list": "nodes", "keys": [key(n) for n in nodes.items]}), flush=True)

    w = watch.Watch()
    for ev in w.stream(v1.list_service_for_all_namespaces, resource_version=a.rv, timeout_seconds=1):
        obj = ev["object"]
        print(json.dumps({"watch": "services", "type": ev["type"], "key": key(obj),
                          "rv": obj.metadata.resource_version}), flush=True)

    w = watch.Watch()
    for ev in w.stream(v1.list_service_for_all_namespaces, timeout_seconds=1):
        print(json.dumps({"initial": "services", "type": ev["type"], "key": key(ev["object"])}), flush=True)

    # WatchList (KEP-3157), as client-go's reflector asks for it.
    w = watch.Watch()
    for ev in w.stream(v1.list_service_for_all_namespaces, send_initial_events=True,
                       resource_version_match="NotOlderThan", allow_watch_bookmarks=True, timeout_seconds=1):
        obj = ev["object"]
        if isinstance(obj, dict):  # some versions hand bookmarks over undecoded
            annotations, k = (obj.get("metadata") or {}).get("annotations") or {}, ""
        else:
            annotations, k = obj.metadata.annotations or {}, (key(obj) if obj.metadata.name else "")
        print(json.dumps({"watchlist": "services", "type": ev["type"], "key": k,
                          "end": annotations.get("k8s.io/initial-events-end") == "true"}), flush=True)
        if ev["type"] == "BOOKMARK":
            break


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the test prints this
        print(json.dumps({"error": repr(e)}), flush=True)
        sys.exit(1)
