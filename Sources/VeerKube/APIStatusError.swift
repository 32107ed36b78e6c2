import Foundation

/// A non-2xx answer, with the Status the API server sent.
struct APIStatusError: Error, CustomStringConvertible {
    var status: Int
    var reason: String?
    var message: String?
    var note: String?
    var retryAfter: Duration?
    /// The server has not reached the resourceVersion asked for (504, cause ResourceVersionTooLarge).
    var tooLargeResourceVersion = false

    init(status: Int, body: Data, note: String? = nil) {
        self.status = status
        self.note = note
        if let s = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] {
            reason = s["reason"] as? String
            message = s["message"] as? String
            tooLargeResourceVersion = Self.isTooLargeResourceVersion(status: s)
        } else if !body.isEmpty {
            message = String(decoding: body.prefix(200), as: UTF8.self)
        }
    }

    var summary: String {
        [note, reason, message].compactMap { $0 }.joined(separator: ": ")
    }

    /// apimachinery's IsTooLargeResourceVersion: the cause type, or the message of older servers.
    static func isTooLargeResourceVersion(status s: [String: Any]) -> Bool {
        let causes = ((s["details"] as? [String: Any])?["causes"] as? [[String: Any]]) ?? []
        return causes.contains { $0["reason"] as? String == "ResourceVersionTooLarge" }
            || (s["message"] as? String)?.contains("Too large resource version") == true
    }
    var description: String { "HTTP \(status): \(summary)" }
}

struct WatchRestart: Error { var reason: String }

/// The server did not stream the initial list (WatchList); list instead. `sticky`: not again
/// while this source runs (the server refused it or ignored it).
struct WatchListUnsupported: Error { var reason: String; var sticky: Bool }

func format(_ d: Duration) -> String {
    let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    return seconds < 10 ? String(format: "%.2fs", seconds) : String(format: "%.0fs", seconds)
}

extension Duration {
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
