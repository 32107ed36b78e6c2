// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Veer",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "veerd", targets: ["veerd"]),
        .executable(name: "veerctl", targets: ["veerctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.20.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.60.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.25.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        // veer_maps.h (a symlink to bpf/include/veer_maps.h) and the few libbpf shims Swift can't call.
        .target(name: "CVeer", linkerSettings: [.linkedLibrary("bpf")]),
        // The version and git revision for --version (Sources/CVeerVersion/veer_version.h, written by make).
        .target(name: "CVeerVersion"),
        // Pure: Kubernetes types, store, selector, planner. No I/O.
        .target(name: "VeerModel"),
        // Everything that touches the kernel.
        .target(name: "VeerDatapath", dependencies: [
            "CVeer", "VeerModel",
        ]),
        // Everything that touches the network or the file system for input: API server, manifests.
        .target(name: "VeerKube", dependencies: [
            "VeerModel",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // The reconcile loop, metrics and health: wires sources, model and datapath together.
        .target(name: "VeerAgent", dependencies: [
            "VeerDatapath", "VeerModel", "VeerKube",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "veerd", dependencies: [
            "CVeerVersion", "VeerAgent", "VeerDatapath", "VeerModel", "VeerKube",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "veerctl", dependencies: [
            "CVeerVersion", "VeerDatapath", "VeerModel",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // `make bench`: installs the datapath on the bench cgroup and fills its maps at scale (Tests/bench/run.sh).
        // `pipeline` runs the agent itself into VeerTestSupport's in-memory maps.
        .executableTarget(name: "veer-bench", dependencies: [
            "CVeer", "VeerAgent", "VeerDatapath", "VeerKube", "VeerModel", "VeerTestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The kernel test sandbox (namespace, child cgroup, pins, processes), shared by the kernel
        // tests, the agent tests and later the multi-node harness.
        // Also the one fake-API-server driver, `waitFor` and the manifest builders every suite uses.
        .target(name: "VeerTestSupport", dependencies: [
            "VeerDatapath", "VeerModel",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
        ], path: "Tests/Support/VeerTestSupport"),
        .testTarget(name: "VeerModelTests", dependencies: ["VeerModel", "VeerKube", "VeerTestSupport"], resources: [.copy("Fixtures")]),
        // The fake API server and the Python client check are run by the tests, not compiled.
        .testTarget(name: "VeerKubeTests", dependencies: [
            "VeerKube", "VeerModel", "VeerTestSupport",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
        ], exclude: ["fake_apiserver.py", "python_client_check.py"]),
        .testTarget(name: "VeerAgentTests", dependencies: [
            "VeerAgent", "VeerDatapath", "VeerKube", "VeerModel", "VeerTestSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], exclude: ["golden"]),
        // Layout checks (no privileges) and kernel tests (root, bpffs, cgroup2; skip with a reason otherwise).
        .testTarget(name: "VeerDatapathTests", dependencies: ["VeerDatapath", "VeerModel", "CVeer", "VeerTestSupport"]),
        // Several nodes on one machine (ClusterSandbox): cross-node behaviour, faults, hostile input, security.
        .testTarget(name: "VeerClusterTests", dependencies: ["VeerDatapath", "VeerModel", "VeerTestSupport"]),
        // deploy/ (rendered by kubectl kustomize, schema-validated), the dashboard and docs/operations.md,
        // checked against the built veerd and the sources (no privileges).
        .testTarget(name: "VeerDeployTests", dependencies: [.product(name: "Yams", package: "Yams")]),
        // The image `make image` built, run with podman in a sandbox as the DaemonSet runs it (root, podman).
        .testTarget(name: "VeerImageTests", dependencies: ["VeerDatapath", "VeerModel", "VeerTestSupport"]),
    ]
)
