import CVeer
import Foundation
import VeerModel

/// One translation as the kernel saw it (`veerctl trace`).
public struct TraceEvent: Hashable, Sendable {
    public enum Verdict: String, Sendable { case translated, refused, dropped }

    /// CLOCK_MONOTONIC nanoseconds.
    public var timestampNS: UInt64
    public var cookie: UInt64
    public var netnsCookie: UInt64
    public var pid: UInt32
    public var command: String
    public var verdict: Verdict
    public var revNatID: UInt32
    public var frontend: L4Address
    /// nil unless translated.
    public var backend: L4Address?

    init(_ e: veer_trace_event) {
        timestampNS = e.ts_ns
        cookie = e.cookie
        netnsCookie = e.netns_cookie
        pid = e.pid
        command = withUnsafeBytes(of: e.comm) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        switch UInt32(e.verdict) {
        case VEER_TRACE_REFUSED.rawValue: verdict = .refused
        case VEER_TRACE_DROPPED.rawValue: verdict = .dropped
        default: verdict = .translated
        }
        revNatID = e.rev_nat_id
        frontend = L4Address(be: e.fe_addr, port: e.fe_port, proto: e.proto)
        backend = verdict == .translated ? L4Address(be: e.be_addr, port: e.be_port, proto: e.proto) : nil
    }
}

/// Reads the trace ring buffer. While a tracer is on, the programs write one event per
/// connect or datagram to a frontend; while none is, they write nothing.
public final class Tracer: @unchecked Sendable {
    private let ringFD: Int32
    private let flag: BPFMap<UInt32, UInt32>
    private var ring: OpaquePointer?
    private let box = EventBox()

    final class EventBox { var events: [TraceEvent] = [] }

    public init(pins: PinLayout) throws {
        let path = "\(pins.maps)/veer_trace"
        ringFD = bpf_obj_get(path)
        guard ringFD >= 0 else { throw DatapathError.syscall(operation: "open \(path)", errno: errno) }
        flag = try BPFMap(pinned: "\(pins.maps)/veer_trace_on", name: "veer_trace_on")
        let ctx = Unmanaged.passUnretained(box).toOpaque()
        ring = ring_buffer__new(ringFD, { ctx, data, size in
            guard let ctx, let data, size >= MemoryLayout<veer_trace_event>.size else { return 0 }
            let box = Unmanaged<Tracer.EventBox>.fromOpaque(ctx).takeUnretainedValue()
            box.events.append(TraceEvent(data.loadUnaligned(as: veer_trace_event.self)))
            return 0
        }, ctx, nil)
        guard ring != nil else {
            close(ringFD)
            throw DatapathError.syscall(operation: "open the trace ring buffer", errno: errno)
        }
    }

    deinit {
        ring_buffer__free(ring)
        close(ringFD)
    }

    /// Turns event writing on or off in the programs.
    public func setEnabled(_ on: Bool) throws {
        try flag.update(0, on ? 1 : 0)
    }

    /// Waits up to `timeoutMS` for events and returns those read.
    public func poll(timeoutMS: Int32) -> [TraceEvent] {
        _ = ring_buffer__poll(ring, timeoutMS)
        defer { box.events.removeAll(keepingCapacity: true) }
        return box.events
    }
}
