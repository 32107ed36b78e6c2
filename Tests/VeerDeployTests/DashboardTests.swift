// deploy/grafana/veer.json, the Grafana dashboard: every PromQL expression parses (promtool, on
// a rules file made from the dashboard), every metric it uses is a documented veerd metric, and
// it shows what an operator needs. That veerd really exports each of them is checked against a
// live scrape, in Tests/VeerImageTests (veerd from the image, in a sandbox).
import Foundation
import Testing

private struct Query {
    var panel: String
    var expr: String
}

/// Every query of the dashboard: panel targets (rows' nested panels included) and the
/// metric selectors inside template variables' `label_values(SELECTOR, label)`.
private func dashboardQueries() throws -> [Query] {
    let data = try Data(contentsOf: repoRoot.appendingPathComponent("deploy/grafana/veer.json"))
    let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "veer.json is not a JSON object")
    var queries: [Query] = []
    func walk(_ panels: [[String: Any]]) {
        for p in panels {
            for t in list(p["targets"]) {
                if let e = t["expr"] as? String { queries.append(Query(panel: "\(p["title"] ?? "?")", expr: e)) }
            }
            walk(list(p["panels"]))
        }
    }
    walk(list(dashboard["panels"]))
    for v in list(dict(dashboard["templating"])["list"]) where v["type"] as? String == "query" {
        let q = (dict(v["query"])["query"] as? String) ?? (v["query"] as? String) ?? ""
        if let m = q.firstMatch(of: try Regex(#"^label_values\((.+),\s*[a-zA-Z_]+\)$"#)) {
            queries.append(Query(panel: "variable \(v["name"] ?? "?")", expr: String(m.output[1].substring ?? "")))
        }
    }
    return queries
}

/// Grafana's variables replaced by values Prometheus accepts: intervals by a duration, the
/// template variables (always inside a regex matcher here) by a regex that matches anything.
private func substituted(_ expr: String) throws -> String {
    var e = expr
    for v in ["$__rate_interval", "$__interval", "$__range"] { e = e.replacingOccurrences(of: v, with: "5m") }
    return e.replacing(try Regex(#"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?"#), with: ".*")
}

/// promtool's verdict on `exprs` as recording rules: nil when all parse, else its message.
private func promtoolCheck(_ exprs: [(name: String, expr: String)]) throws -> String? {
    let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }
    let tool = try #require(promtool, "promtool is missing: `make test` installs it (Debian's prometheus package)")
    var rules = "groups:\n- name: veer-dashboard\n  rules:\n"
    for (name, expr) in exprs {
        // JSON strings are valid YAML scalars: no quoting rules to get wrong.
        let quoted = String(decoding: try JSONSerialization.data(withJSONObject: [expr], options: [.withoutEscapingSlashes]), as: UTF8.self)
            .dropFirst().dropLast()
        rules += "  - record: \(name)\n    expr: \(quoted)\n"
    }
    let file = NSTemporaryDirectory() + "veer-dashboard-rules-\(getpid())-\(UUID().uuidString.prefix(8)).yml"
    try rules.write(toFile: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: file) }
    let r = try run(tool, ["check", "rules", file])
    return r.status == 0 ? nil : r.stdout + r.stderr
}

/// The metric names an expression uses (series names, not functions or labels).
private func metricNames(_ expr: String) throws -> Set<String> {
    Set(expr.matches(of: #/\bveer_[a-z_]+/#).map { String($0.output) })
}

/// The family a series belongs to: a histogram's _bucket, _sum and _count are its family's.
private func family(_ name: String) -> String {
    for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
        return String(name.dropLast(suffix.count))
    }
    return name
}

@Suite("deploy/grafana/veer.json")
struct DashboardTests {
    @Test("Every PromQL expression in the dashboard parses (promtool check rules)")
    func expressionsParse() throws {
        let queries = try dashboardQueries()
        #expect(queries.count >= 15, "could not read the dashboard's queries: \(queries.map(\.expr))")
        let rules = try queries.enumerated().map { (name: "dashboard:query_\($0.offset)", expr: try substituted($0.element.expr)) }
        let failure = try promtoolCheck(rules)
        // promtool names the rule by index; the panel titles say which one that is.
        #expect(failure == nil, """
            \(failure ?? "")
            queries: \(queries.enumerated().map { "#\($0.offset) \($0.element.panel): \($0.element.expr)" }.joined(separator: "\n"))
            """)
    }

    @Test("The same check fails on a broken expression, naming it")
    func brokenExpressionFails() throws {
        let failure = try promtoolCheck([(name: "dashboard:ok", expr: "sum(veer_frontends)"),
                                         (name: "dashboard:broken", expr: "sum by (zone) (rate(veer_endpoint_hits_total[5m])")])
        let message = try #require(failure, "promtool accepted an unbalanced parenthesis")
        #expect(message.contains("parse error") || message.contains("unclosed"), "\(message)")
    }

    @Test("Every metric the dashboard uses is a documented veerd metric")
    func metricsDocumented() throws {
        let used = Set(try dashboardQueries().flatMap { try metricNames($0.expr) }.map(family))
        let doc = try text("docs/operations.md")
        let documented = Set(doc.split(separator: "\n").filter { $0.hasPrefix("| `veer_") }
            .compactMap { $0.firstMatch(of: #/`(veer_[a-z_]+)`/#).map { String($0.output.1) } })
        #expect(documented.count >= 10, "could not read the metrics table of docs/operations.md")
        #expect(used.subtracting(documented).isEmpty, "not veerd metrics: \(used.subtracting(documented).sorted())")
    }

    @Test("It shows hits per endpoint and zone, programming latency, rejected services, socket terminations and map fill")
    func coversWhatOperatorsNeed() throws {
        let queries = try dashboardQueries()
        func uses(_ metric: String, _ also: String = "") throws -> Bool {
            try queries.contains { try metricNames($0.expr).contains(metric) && (also.isEmpty || $0.expr.contains(also)) }
        }
        #expect(try uses("veer_endpoint_hits_total", "endpoint)"), "hits per endpoint")
        #expect(try uses("veer_endpoint_info", "group_left (zone)"), "hits per zone: the join to veer_endpoint_info's zone")
        #expect(try uses("veer_programming_latency_seconds_bucket", "histogram_quantile"), "programming latency")
        #expect(try uses("veer_services_rejected"), "rejected services")
        #expect(try uses("veer_sockets_terminated_total"), "socket terminations")
        #expect(try uses("veer_map_entries", "veer_map_capacity"), "map fill: entries over capacity")
    }
}
