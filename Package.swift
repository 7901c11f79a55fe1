// swift-tools-version: 6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "PalletFlow",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "palletflowd", targets: ["palletflowd"]),
        .executable(name: "palletflow-worker", targets: ["palletflow-worker"]),
        .executable(name: "palletflow", targets: ["palletflow"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird.git", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-openapi-generator.git", from: "1.14.3"),
        .package(url: "https://github.com/apple/swift-openapi-runtime.git", from: "1.13.4"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        // Build-time helper: embeds sql/*.sql and openapi.yaml into the binaries.
        .executableTarget(name: "EmbedTool", path: "Sources/EmbedTool"),
        .plugin(name: "EmbedFiles", capability: .buildTool(), dependencies: ["EmbedTool"]),
        // Domain types and rules. Pure Swift: no I/O, no database.
        .target(
            name: "PalletFlowCore",
            swiftSettings: swiftSettings
        ),
        // GS1 EPCIS 2.0: reading and validating documents, GS1 keys, the pallet exchange
        // profile's mapping to movements, and movements shown as events. Pure Swift.
        .target(
            name: "PalletFlowEPCIS",
            dependencies: ["PalletFlowCore"],
            swiftSettings: swiftSettings
        ),
        // The I/O edge: PostgreSQL (embedded cluster, migrations, repositories, job queue)
        // and the webhook destination lookup.
        .target(
            name: "PalletFlowStore",
            dependencies: [
                "PalletFlowCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings,
            plugins: ["EmbedFiles"]
        ),
        // The OpenAPI contract: openapi.yaml and the types and server stubs generated from it.
        .target(
            name: "PalletFlowContract",
            dependencies: [
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
            ],
            // The generated code's unused-import warnings are the generator's, not ours.
            swiftSettings: swiftSettings + [.unsafeFlags(["-suppress-warnings"])],
            plugins: [
                .plugin(name: "OpenAPIGenerator", package: "swift-openapi-generator"),
                "EmbedFiles",
            ]
        ),
        // HTTP: handlers of the contract, auth, problem+json, middlewares.
        .target(
            name: "PalletFlowAPI",
            dependencies: [
                "PalletFlowCore",
                "PalletFlowEPCIS",
                "PalletFlowStore",
                "PalletFlowContract",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        // The demo ecosystem: a shipper's network seeded with a year of plausible facts.
        .target(
            name: "PalletFlowDemo",
            dependencies: ["PalletFlowCore", "PalletFlowStore", "PalletFlowWorker"],
            swiftSettings: swiftSettings
        ),
        // Background jobs: indicators, alerts, schedules, webhook deliveries.
        .target(
            name: "PalletFlowWorker",
            dependencies: [
                "PalletFlowCore",
                "PalletFlowStore",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "palletflowd",
            dependencies: [
                "PalletFlowAPI",
                "PalletFlowCore",
                "PalletFlowStore",
                "PalletFlowWorker",
                "PalletFlowDemo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "palletflow-worker",
            dependencies: [
                "PalletFlowWorker",
                "PalletFlowCore",
                "PalletFlowStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "palletflow",
            dependencies: [
                "PalletFlowCore",
                "PalletFlowStore",
                "PalletFlowWorker",
                "PalletFlowDemo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PalletFlowCoreTests",
            dependencies: ["PalletFlowCore", "PalletFlowEPCIS"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PalletFlowTests",
            dependencies: [
                "PalletFlowAPI",
                "PalletFlowContract",
                "PalletFlowStore",
                "PalletFlowWorker",
                "PalletFlowCore",
                "PalletFlowEPCIS",
                "PalletFlowDemo",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
