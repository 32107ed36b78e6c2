import NIOCore
import NIOHTTP1
import NIOPosix

/// One answer of a health endpoint: status, headers and body, as kube-proxy writes them.
public struct HealthResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: [(String, String)]
    public var body: String

    public init(status: HTTPResponseStatus, headers: [(String, String)], body: String) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// A small HTTP/1.1 listener for the health endpoints (the proxy's /healthz and /livez, and the
/// per-Service healthCheckNodePort servers). Answers synchronously on the event loop from state
/// kept behind a lock: a load balancer probing every few seconds never waits on the agent's
/// reconcile loop. Many listeners share one event loop group.
final class HealthHTTPServer: Sendable {
    typealias Handler = @Sendable (_ path: String) -> HealthResponse

    private let channel: Channel

    var port: Int { channel.localAddress?.port ?? 0 }

    init(group: EventLoopGroup, host: String, port: Int, handler: @escaping Handler) async throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            // As Go's listeners (kube-proxy's) do: a port closed a moment ago binds again at once.
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(HealthRequestHandler(handler: handler))
                }
            }
        channel = try await bootstrap.bind(host: host, port: port).get()
    }

    func close() async {
        try? await channel.close()
    }
}

private final class HealthRequestHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let handler: HealthHTTPServer.Handler
    private var path = "/"
    private var keepAlive = false

    init(handler: @escaping HealthHTTPServer.Handler) { self.handler = handler }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head):
            path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "/")
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            let r = handler(path)
            var headers = HTTPHeaders()
            for (name, value) in r.headers { headers.add(name: name, value: value) }
            headers.add(name: "Content-Length", value: "\(r.body.utf8.count)")
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: r.status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: r.body)))), promise: nil)
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive {
                let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
                done.whenComplete { _ in ctx.value.close(promise: nil) }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
