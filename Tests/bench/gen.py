#!/usr/bin/env python3
"""Writes the rules kube-proxy would program for N ClusterIP services with 10 endpoints each.

  gen.py iptables N OUT [NODE_IP]   an iptables-restore file (nat + filter), iptables mode shape
  gen.py nft N OUT [NODE_IP]        an `nft -f` file, nftables mode shape (table ip kube-proxy)
  gen.py veer N OUT                 the frontends for veer-bench, one per line: VIP PORT PROTO EP:PORT ...
  gen.py veer-ext N OUT NODE NODE_IP  the same Services and EndpointSlices, plus the Node, as one JSON List
                                    for `veerd --manifests` (the external-client mode runs the real agent)

The numbering is shared with run.sh: service i has ClusterIP 10.96.0.0+1+i, port tcp/80, and
endpoints 10.128.1.0+10i+j (j < 10) on port 8080; all endpoints sit in 10.128.0.0/9, the pod
CIDR, which the bench namespaces route locally. The measured service, i = N // 2 (the middle of
KUBE-SERVICES, the average position), has two more ports: tcp/81 -> 8081 (bulk) and
udp/53 -> 8053 (DNS-like). It is also a NodePort Service (eTP=Cluster): nodePorts 30080, 30081 and
30053, written as kube-proxy writes them for a node whose address is NODE_IP (its
--nodeport-addresses; nft's nodeport-ips set. iptables matches NodePorts by `addrtype LOCAL`, as
kube-proxy's iptables mode does by default, so it ignores NODE_IP): the external-client mode
connects to NODE_IP:30080 from outside the node.
"""
import base64, hashlib, ipaddress, json, sys

ENDPOINTS = 10
POD_CIDR = "10.128.0.0/9"
SERVICE_CIDR = "10.96.0.0/12"


def vip(i): return str(ipaddress.IPv4Address(0x0A600001 + i))
def ep(i, j): return str(ipaddress.IPv4Address(0x0A800100 + i * ENDPOINTS + j))
def measured(n): return n // 2


def ports(i, n):
    p = [("tcp", 80, 8080, "http")]
    if i == measured(n):
        p += [("tcp", 81, 8081, "bulk"), ("udp", 53, 8053, "dns")]
    return p


NODE_PORTS = {80: 30080, 81: 30081, 53: 30053}  # the measured service's nodePorts, by service port


def node_port(i, n, port):
    return NODE_PORTS[port] if i == measured(n) else None


def h(s):  # kube-proxy: base32(sha256(...))[:16]
    return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()[:16]


def iptables(n, out, node_ip=None):
    large = n * ENDPOINTS > 1000  # kube-proxy's largeClusterMode drops endpoint comments
    w = out.write
    w("*filter\n:KUBE-SERVICES - [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FIREWALL - [0:0]\n"
      ":KUBE-NODEPORTS - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-FORWARD - [0:0]\n"
      "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
      "-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n"
      "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n"
      "-A INPUT -j KUBE-FIREWALL\n"
      "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
      "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n"
      "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
      "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n"
      "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"
      "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n"
      "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
      "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
      "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
      "-A OUTPUT -j KUBE-FIREWALL\n"
      "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" "
      "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n"
      "COMMIT\n")
    chains, rules = [], []
    svc_rules, nodeport_rules = [], []
    for i in range(n):
        for proto, port, tport, pname in ports(i, n):
            name = f"bench/svc-{i}:{pname}"
            svc = "KUBE-SVC-" + h(name + proto)
            chains.append(svc)
            np_ = node_port(i, n, port)
            if np_:
                # kube-proxy's NodePort, eTP=Cluster: KUBE-NODEPORTS -> KUBE-EXT-* (masquerade) -> KUBE-SVC-*.
                ext = "KUBE-EXT-" + h(name + proto)
                chains.append(ext)
                nodeport_rules.append(f"-A KUBE-NODEPORTS -m comment --comment {name} -m {proto} -p {proto} --dport {np_} -j {ext}\n")
                rules.append(f"-A {ext} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ\n")
                rules.append(f"-A {ext} -j {svc}\n")
            v = vip(i)
            svc_rules.append(f"-A KUBE-SERVICES -d {v}/32 -p {proto} -m comment --comment \"{name} cluster IP\" "
                             f"-m {proto} --dport {port} -j {svc}\n")
            rules.append(f"-A {svc} ! -s {POD_CIDR} -d {v}/32 -p {proto} -m comment --comment \"{name} cluster IP\" "
                         f"-m {proto} --dport {port} -j KUBE-MARK-MASQ\n")
            for j in range(ENDPOINTS):
                e = ep(i, j)
                sep = "KUBE-SEP-" + h(name + proto + f"{e}:{tport}")
                chains.append(sep)
                c = "" if large else f"-m comment --comment \"{name} -> {e}:{tport}\" "
                left = ENDPOINTS - j
                stat = f"-m statistic --mode random --probability {1.0 / left:.11f} " if left > 1 else ""
                rules.append(f"-A {svc} {c}{stat}-j {sep}\n")
                c2 = "" if large else f"-m comment --comment {name} "
                rules.append(f"-A {sep} -s {e}/32 {c2}-j KUBE-MARK-MASQ\n")
                rules.append(f"-A {sep} -p {proto} {c2}-m {proto} -j DNAT --to-destination {e}:{tport}\n")
    w("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n")
    for c in chains:
        w(f":{c} - [0:0]\n")
    w("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
      "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
      "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n"
      "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n"
      "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
      "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n"
      "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n")
    out.writelines(svc_rules)
    w("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" "
      "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n")
    out.writelines(nodeport_rules)
    out.writelines(rules)
    w("COMMIT\n")


def nft(n, out, node_ip=None):
    # The base chains, sets and maps as kube-proxy 1.31+ writes them (its TestOverallNFTablesRules).
    w = out.write
    T = "ip kube-proxy"
    w(f"add table {T} {{ comment \"rules for kube-proxy\" ; }}\n")
    for c in ["mark-for-masquerade", "masquerading", "services", "service-endpoints-check", "firewall-check",
              "cluster-ips-check", "nodeport-endpoints-check"]:
        w(f"add chain {T} {c}\n")
    w(f"add chain {T} reject-chain {{ comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ; }}\n"
      f"add chain {T} nat-output {{ type nat hook output priority -100 ; }}\n"
      f"add chain {T} nat-prerouting {{ type nat hook prerouting priority -100 ; }}\n"
      f"add chain {T} nat-postrouting {{ type nat hook postrouting priority 100 ; }}\n"
      f"add chain {T} filter-prerouting-pre-dnat {{ type filter hook prerouting priority -110 ; }}\n"
      f"add chain {T} filter-output-pre-dnat {{ type filter hook output priority -110 ; }}\n"
      f"add chain {T} filter-forward {{ type filter hook forward priority 0 ; }}\n"
      f"add chain {T} filter-input {{ type filter hook input priority 0 ; }}\n"
      f"add chain {T} filter-output {{ type filter hook output priority 0 ; }}\n"
      f"add set {T} cluster-ips {{ type ipv4_addr ; comment \"Active ClusterIPs\" ; }}\n"
      f"add set {T} nodeport-ips {{ type ipv4_addr ; comment \"IPs that accept NodePort traffic\" ; }}\n"
      f"add map {T} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }}\n"
      f"add map {T} service-nodeports {{ type inet_proto . inet_service : verdict ; comment \"NodePort traffic\" ; }}\n"
      f"add map {T} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}\n"
      f"add map {T} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; }}\n"
      f"add map {T} firewall-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}\n"
      f"add rule {T} cluster-ips-check ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"\n"
      f"add rule {T} cluster-ips-check ip daddr {{ {SERVICE_CIDR} }} drop comment \"Drop traffic to unallocated ClusterIPs\"\n"
      f"add rule {T} filter-prerouting-pre-dnat ct state new jump firewall-check\n"
      f"add rule {T} filter-forward ct state new jump service-endpoints-check\n"
      f"add rule {T} filter-forward ct state new jump cluster-ips-check\n"
      f"add rule {T} filter-input ct state new jump nodeport-endpoints-check\n"
      f"add rule {T} filter-input ct state new jump service-endpoints-check\n"
      f"add rule {T} filter-output ct state new jump service-endpoints-check\n"
      f"add rule {T} filter-output-pre-dnat ct state new jump firewall-check\n"
      f"add rule {T} filter-output ct state new jump cluster-ips-check\n"
      f"add rule {T} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips\n"
      f"add rule {T} mark-for-masquerade mark set mark or 0x4000\n"
      f"add rule {T} masquerading mark and 0x4000 == 0 return\n"
      f"add rule {T} masquerading mark set mark xor 0x4000\n"
      f"add rule {T} masquerading masquerade fully-random\n"
      f"add rule {T} nat-output jump services\n"
      f"add rule {T} nat-postrouting jump masquerading\n"
      f"add rule {T} nat-prerouting jump services\n"
      f"add rule {T} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports\n"
      f"add rule {T} reject-chain reject\n"
      f"add rule {T} services ip daddr . meta l4proto . th dport vmap @service-ips\n"
      f"add rule {T} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports\n"
      f"add rule {T} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services\n")
    if node_ip:
        w(f"add element {T} nodeport-ips {{ {node_ip} }}\n")
    elements, ips, nodeports = [], [], []
    for i in range(n):
        v = vip(i)
        ips.append(v)
        for proto, port, tport, pname in ports(i, n):
            base = f"bench/svc-{i}/{proto}/{pname}"
            svc = f"service-{h(base)[:8]}-{base}"
            w(f"add chain {T} {svc}\n")
            w(f"add rule {T} {svc} ip daddr {v} ip saddr != {POD_CIDR} jump mark-for-masquerade\n")
            gotos = []
            for j in range(ENDPOINTS):
                e = ep(i, j)
                epc = f"endpoint-{h(base + e)[:8]}-{base}__{e}/{tport}"
                w(f"add chain {T} {epc}\n")
                w(f"add rule {T} {epc} ip saddr {e} jump mark-for-masquerade\n")
                w(f"add rule {T} {epc} meta l4proto {proto} dnat to {e}:{tport}\n")
                gotos.append(f"{j} : goto {epc}")
            w(f"add rule {T} {svc} numgen random mod {ENDPOINTS} vmap {{ {', '.join(gotos)} }}\n")
            elements.append(f"{v} . {proto} . {port} : goto {svc}")
            np_ = node_port(i, n, port)
            if np_:
                # NodePort, eTP=Cluster: the external chain masquerades everything, then the service chain.
                ext = f"external-{h(base)[:8]}-{base}"
                w(f"add chain {T} {ext}\n")
                w(f"add rule {T} {ext} jump mark-for-masquerade\n")
                w(f"add rule {T} {ext} goto {svc}\n")
                nodeports.append(f"{proto} . {np_} : goto {ext}")
    for k in range(0, len(elements), 1000):
        w(f"add element {T} service-ips {{ {', '.join(elements[k:k + 1000])} }}\n")
    for k in range(0, len(ips), 1000):
        w(f"add element {T} cluster-ips {{ {', '.join(ips[k:k + 1000])} }}\n")
    if nodeports:
        w(f"add element {T} service-nodeports {{ {', '.join(nodeports)} }}\n")


def veer(n, out):
    for i in range(n):
        for proto, port, tport, _ in ports(i, n):
            out.write(f"{vip(i)} {port} {proto} " + " ".join(f"{ep(i, j)}:{tport}" for j in range(ENDPOINTS)) + "\n")


def veer_ext(n, out, node, node_ip):
    """The Services and EndpointSlices above as Kubernetes objects, and the Node, for veerd --manifests.
    The measured service's endpoints live on node "bench-node-b" (the other node)."""
    items = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {}},
              "status": {"addresses": [{"type": "InternalIP", "address": node_ip}]}}]
    for i in range(n):
        ps = ports(i, n)
        spec = {"type": "NodePort" if i == measured(n) else "ClusterIP", "clusterIP": vip(i), "clusterIPs": [vip(i)],
                "ports": [{"name": pname, "port": port, "protocol": proto.upper(), "targetPort": tport}
                          | ({"nodePort": node_port(i, n, port)} if node_port(i, n, port) else {})
                          for proto, port, tport, pname in ps]}
        if i == measured(n):
            spec["externalTrafficPolicy"] = "Cluster"
        items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}", "namespace": "bench"}, "spec": spec})
        items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": f"svc-{i}-1", "namespace": "bench", "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
                      "addressType": "IPv4",
                      "ports": [{"name": pname, "port": tport, "protocol": proto.upper()} for proto, port, tport, pname in ps],
                      "endpoints": [{"addresses": [ep(i, j)], "conditions": {"ready": True, "serving": True, "terminating": False},
                                     "nodeName": "bench-node-b" if i == measured(n) else f"node-{j}"}
                                    for j in range(ENDPOINTS)]})
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, out)


if __name__ == "__main__":
    kind, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    extra = sys.argv[4:]
    with open(path, "w") as f:
        {"iptables": iptables, "nft": nft, "veer": veer, "veer-ext": veer_ext}[kind](n, f, *extra)
