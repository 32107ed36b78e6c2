import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The one small HTTP/1.1 listener veerd serves from: /metrics (and /healthz, /readyz) on the
/// metrics address, kube-proxy's /healthz and /livez, and the healthCheckNodePort of each
/// eTP=Local LoadBalancer Service, and veerctl's decisions on a unix socket in the state
/// directory. Its handler is one of two kinds:
/// - `.async`: given the path and the decoded query parameters, may await the agent (a scrape
///   renders its snapshot); the connection closes after the answer.
/// - `.onEventLoop`: answers synchronously on the event loop from state kept behind a lock, so a
///   load balancer probing every few seconds never waits on the agent's reconcile loop; keep-alive
///   is honoured.
public final class HTTPListener: Sendable {
    /// One answer: status, headers and body (Content-Length is added).
    public struct Response: Sendable {
        public var status: HTTPResponseStatus
        public var headers: [(String, String)]
        /// The body as sent: a scrape's tens of megabytes go out in the buffer they were rendered
        /// into, never copied, never through a String.
        public var buffer: ByteBuffer

        public var bytes: [UInt8] { Array(buffer.readableBytesView) }
        public var body: String { String(buffer: buffer) }

        public init(status: HTTPResponseStatus, headers: [(String, String)], buffer: ByteBuffer) {
            self.status = status
            self.headers = headers
            self.buffer = buffer
        }

        public init(status: HTTPResponseStatus, headers: [(String, String)], bytes: [UInt8]) {
            self.init(status: status, headers: headers, buffer: ByteBuffer(bytes: bytes))
        }

        public init(status: HTTPResponseStatus, headers: [(String, String)], body: String) {
            self.init(status: status, headers: headers, buffer: ByteBuffer(string: body))
        }

        public init(_ status: HTTPResponseStatus, contentType: String, _ body: String) {
            self.init(status: status, headers: [("Content-Type", contentType)], body: body)
        }

        public init(_ status: HTTPResponseStatus, contentType: String, bytes: [UInt8]) {
            self.init(status: status, headers: [("Content-Type", contentType)], bytes: bytes)
        }

        public init(_ status: HTTPResponseStatus, contentType: String, buffer: ByteBuffer) {
            self.init(status: status, headers: [("Content-Type", contentType)], buffer: buffer)
        }

        /// A body sent as `produce` writes it, chunk by chunk (HTTP/1.1 chunked transfer
        /// encoding; to an HTTP/1.0 client, until the connection closes): a scrape of tens of
        /// megabytes is never held whole. `produce` runs in a task of its own once the head is
        /// sent; the answer ends when it returns.
        public init(_ status: HTTPResponseStatus, contentType: String,
                    stream produce: @escaping @Sendable (BodyStream) async -> Void) {
            self.init(status: status, headers: [("Content-Type", contentType)], buffer: ByteBuffer())
            stream = produce
        }

        /// The streamed body's producer (nil: `buffer` is the body).
        public var stream: (@Sendable (BodyStream) async -> Void)?
    }

    /// A streamed response's body, as its producer writes it: one chunk in flight at a time.
    public final class BodyStream: @unchecked Sendable {
        private let context: NIOLoopBound<ChannelHandlerContext>
        private let loop: EventLoop
        /// The producer's thread only: the write in flight, and whether one failed.
        private var inFlight: EventLoopFuture<Void>?
        private var failed = false

        fileprivate init(context: ChannelHandlerContext) {
            self.context = NIOLoopBound(context, eventLoop: context.eventLoop)
            loop = context.eventLoop
        }

        /// Sends `chunk` once the chunk before it is written to the socket, blocking the
        /// calling thread until then: the backpressure that keeps a slow client from queueing
        /// the whole text in the channel. Call it from a thread of its own (a scrape's render
        /// thread), never from an event loop or a task of the shared pool. Returns false once
        /// the client is gone (the caller stops writing).
        public func write(_ chunk: ByteBuffer) -> Bool {
            precondition(!loop.inEventLoop, "BodyStream.write blocks: not on the event loop")
            guard waitForInFlight() else { return false }
            inFlight = loop.flatSubmit { [context] in
                context.value.writeAndFlush(NIOAny(HTTPServerResponsePart.body(.byteBuffer(chunk))))
            }
            return true
        }

        /// Waits for the last chunk (after the producer returned); false if a write failed.
        fileprivate func finish() async -> Bool {
            if let inFlight {
                self.inFlight = nil
                do { try await inFlight.get() } catch { failed = true }
            }
            return !failed
        }

        private func waitForInFlight() -> Bool {
            guard !failed else { return false }
            if let inFlight {
                self.inFlight = nil
                do { try inFlight.wait() } catch { failed = true }
            }
            return !failed
        }
    }

    public enum Handler: Sendable {
        /// Answered by async code off the event loop; `query` is the decoded query string.
        case async(@Sendable (_ path: String, _ query: [String: String]) async -> Response)
        case onEventLoop(@Sendable (_ path: String) -> Response)
    }

    private let channel: Channel
    /// The group made for this listener alone (nil: it shares its caller's).
    private let ownGroup: MultiThreadedEventLoopGroup?

    public var port: Int { channel.localAddress?.port ?? 0 }

    /// A listener on its own event loop thread.
    public convenience init(host: String, port: Int, handler: Handler) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await self.init(group: group, ownGroup: group, address: .tcp(host: host, port: port), handler: handler)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// A listener on a unix socket at `path`, on its own event loop thread. A socket file left
    /// there (a veerd that did not stop gracefully) is replaced; the caller owns its directory and
    /// its mode (NIO creates the file under the umask), and removes it after `close`.
    public convenience init(unixSocket path: String, handler: Handler) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await self.init(group: group, ownGroup: group, address: .unix(path), handler: handler)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// A listener on a group shared with others (the health listeners); the caller shuts it down.
    public convenience init(group: EventLoopGroup, host: String, port: Int, handler: Handler) async throws {
        try await self.init(group: group, ownGroup: nil, address: .tcp(host: host, port: port), handler: handler)
    }

    private enum Address {
        case tcp(host: String, port: Int)
        case unix(String)
    }

    private init(group: EventLoopGroup, ownGroup: MultiThreadedEventLoopGroup?, address: Address, handler: Handler) async throws {
        var bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(RequestHandler(handler: handler))
                }
            }
        switch address {
        case let .tcp(host, port):
            // As Go's listeners (kube-proxy's) do: a port closed a moment ago binds again at once.
            bootstrap = bootstrap.serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            channel = try await bootstrap.bind(host: host, port: port).get()
        case let .unix(path):
            channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        }
        self.ownGroup = ownGroup
    }

    public func close() async {
        try? await channel.close()
        try? await ownGroup?.shutdownGracefully()
    }
}

private final class RequestHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let handler: HTTPListener.Handler
    private var path = "/"
    private var query = ""
    private var keepAlive = false
    private var version = HTTPVersion.http1_1

    init(handler: HTTPListener.Handler) { self.handler = handler }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head):
            let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            path = String(parts.first ?? "/")
            query = parts.count > 1 ? String(parts[1]) : ""
            keepAlive = head.isKeepAlive
            version = head.version
        case .body:
            break
        case .end:
            switch handler {
            case let .onEventLoop(respond):
                write(respond(path), keepAlive: keepAlive, context: context)
            case let .async(respond):
                let parameters = Self.parameters(query)
                answer(context: context) { [path] in await respond(path, parameters) }
            }
        }
    }

    private func answer(context: ChannelHandlerContext, _ respond: @escaping @Sendable () async -> HTTPListener.Response) {
        // NIO's bridge from the event loop to async code: the task lives as long as one answer.
        let promise = context.eventLoop.makePromise(of: HTTPListener.Response.self)
        promise.completeWithTask { await respond() }
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        promise.futureResult.whenSuccess { response in
            if let produce = response.stream {
                self.stream(response, produce, context: ctx.value)
            } else {
                self.write(response, keepAlive: false, context: ctx.value)
            }
        }
    }

    /// "a=b&c=d%2Fe" → ["a": "b", "c": "d/e"]; the last of a repeated name wins.
    static func parameters(_ query: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            // A parameter that does not decode is left out (the handler then says what is missing).
            func decoded(_ s: Substring) -> String? { s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
            guard let name = decoded(kv[0]), let value = kv.count > 1 ? decoded(kv[1]) : "" else { continue }
            out[name] = value
        }
        return out
    }

    private func write(_ r: HTTPListener.Response, keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        for (name, value) in r.headers { headers.add(name: name, value: value) }
        let size = r.buffer.readableBytes
        headers.add(name: "Content-Length", value: "\(size)")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: r.status, headers: headers))), promise: nil)
        // The body's own buffer (a scrape renders into one of at least 33 MB, its own mapping,
        // unmapped when freed): copying 130 MB at 50,000 services into another was a tenth of
        // a scrape and as much again in resident memory.
        context.write(wrapOutboundOut(.body(.byteBuffer(r.buffer))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.whenComplete { _ in ctx.value.close(promise: nil) }
        }
        if size >= HeapRelease.threshold {
            // Once the body is freed (after this write's callbacks), not before.
            let loop = context.eventLoop
            done.whenComplete { _ in loop.execute { HeapRelease.now() } }
        }
    }

    /// A streamed answer: the head now (no Content-Length: NIO's encoder then sends the body
    /// chunked to an HTTP/1.1 client), the body as `produce` writes it, then its end, and the
    /// connection closed. A producer cut short (the client gone) closes it without the end.
    private func stream(_ r: HTTPListener.Response, _ produce: @escaping @Sendable (HTTPListener.BodyStream) async -> Void,
                        context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        for (name, value) in r.headers { headers.add(name: name, value: value) }
        headers.add(name: "Connection", value: "close")
        // An HTTP/1.0 client gets no chunks: the closed connection ends the body.
        let v = version.major == 1 && version.minor == 0 ? HTTPVersion.http1_0 : .http1_1
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: v, status: r.status, headers: headers))), promise: nil)
        let body = HTTPListener.BodyStream(context: context)
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        let loop = context.eventLoop
        Task {
            await produce(body)
            let whole = await body.finish()
            loop.execute {
                let context = ctx.value
                guard whole else {
                    context.close(promise: nil)
                    return
                }
                context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in ctx.value.close(promise: nil) }
                // What the render freed (its per-scrape arrays), handed back to the kernel.
                HeapRelease.now()
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
