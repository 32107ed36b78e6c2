import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// A minimal HTTP/1.1 server for /metrics and /healthz. Bound to loopback by default:
/// the counters name every service and pod on the node.
public final class MetricsServer: Sendable {
    public typealias Handler = @Sendable (String) async -> (status: HTTPResponseStatus, contentType: String, body: String)

    private let channel: Channel
    private let group: MultiThreadedEventLoopGroup

    public var port: Int { channel.localAddress?.port ?? 0 }

    public init(host: String, port: Int, handler: @escaping Handler) async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(RequestHandler(handler: handler))
                }
            }
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    public func close() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}

private final class RequestHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let handler: MetricsServer.Handler
    private var path = "/"

    init(handler: @escaping MetricsServer.Handler) { self.handler = handler }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head):
            path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "/")
        case .body:
            break
        case .end:
            let path = self.path
            let handler = self.handler
            let promise = context.eventLoop.makePromise(of: (HTTPResponseStatus, String, String).self)
            promise.completeWithTask { await handler(path) }
            let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
            promise.futureResult.whenSuccess { status, contentType, body in
                let context = ctx.value
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: contentType)
                headers.add(name: "Content-Length", value: "\(body.utf8.count)")
                headers.add(name: "Connection", value: "close")
                context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
                context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
                context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
            }
        }
    }
}
