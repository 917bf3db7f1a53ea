// swift-tools-version: 6.2
import PackageDescription

/// Every target of this package treats a warning as an error (dependencies are not affected).
let strict: [SwiftSetting] = [.treatAllWarnings(as: .error)]

let package = Package(
    name: "UsageLedger",
    products: [
        .library(name: "UsageLedger", targets: ["UsageLedger"]),
        // The storage layer on its own, for embedders and for the raw-LMDB baselines in Benchmarks/.
        .library(name: "LMDBStorage", targets: ["LMDBStorage"]),
        // `Timestamp` to and from Foundation's `Date`, for code that uses Foundation (the library does not).
        .library(name: "UsageLedgerFoundationCompat", targets: ["UsageLedgerFoundationCompat"]),
        .executable(name: "usage-ledger", targets: ["usage-ledger"]),
        // The exactly-once export into PostgreSQL: the only product that builds postgres-nio.
        .executable(name: "usage-ledger-export", targets: ["usage-ledger-export"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        // Only for `make docs` (swift package generate-documentation); no target depends on it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // The C layer: LMDB as Debian ships it, nothing more.
        .systemLibrary(
            name: "CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"])]
        ),
        // The storage layer over LMDB: environment, typed tables and codecs, read and write transactions,
        // cursors.
        .target(name: "LMDBStorage", dependencies: ["CLMDB"], swiftSettings: strict),
        // The ledger's domain: events, validation, timestamps and the JSON wire codec.
        .target(name: "LedgerCore", swiftSettings: strict),
        // The ledger itself: the schema and binary record codecs, the append-only log, the projector,
        // queries, maintenance (rollup, rebuild, verify) and compaction.
        .target(
            name: "UsageLedger",
            dependencies: [
                "LMDBStorage", "LedgerCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),
        // Conversions between `Timestamp` and Foundation's `Date`, kept out of the library so that it does not
        // link Foundation.
        .target(name: "UsageLedgerFoundationCompat", dependencies: ["LedgerCore"], swiftSettings: strict),
        // The command-line tool: a thin shell over the library.
        .executableTarget(
            name: "usage-ledger",
            dependencies: [
                "UsageLedger",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // The export of a ledger's feed and sealed hours into PostgreSQL, exactly once (postgres-nio).
        .target(
            name: "LedgerExport",
            dependencies: [
                "UsageLedger", "LedgerCore", "LMDBStorage",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // Its command: a thin shell over LedgerExport.
        .executableTarget(
            name: "usage-ledger-export",
            dependencies: ["LedgerExport", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),
        // A child process for the crash tests: appends batches and acknowledges each after commit.
        .executableTarget(
            name: "ledger-crash-worker", dependencies: ["UsageLedger", "LMDBStorage", "LedgerCore"],
            path: "Tests/CrashWorker",
            swiftSettings: strict),
        // Fuzz targets for the event decoder and the stored-record decoders (`make fuzz`); built normally
        // they replay a corpus, which the tests do with the seeds under Tests/Fuzz/Corpus.
        // The soak (make soak): processes appending, querying, rolling up and compacting for minutes.
        .executableTarget(
            name: "ledger-soak", dependencies: ["UsageLedger", "LedgerCore"], path: "Tests/Soak",
            swiftSettings: strict),
        .target(name: "CFuzzSupport", path: "Tests/Fuzz/CFuzzSupport"),
        .executableTarget(
            name: "fuzz-event-json", dependencies: ["UsageLedger", "CFuzzSupport"], path: "Tests/Fuzz/EventJSON",
            swiftSettings: strict),
        .executableTarget(
            name: "fuzz-stored-record", dependencies: ["UsageLedger", "CFuzzSupport"], path: "Tests/Fuzz/StoredRecord",
            swiftSettings: strict),
        .testTarget(
            name: "UsageLedgerTests",
            dependencies: [
                "UsageLedger", "LMDBStorage", "LedgerCore", "UsageLedgerFoundationCompat", "usage-ledger",
                "usage-ledger-export",
                "ledger-crash-worker", "fuzz-event-json", "fuzz-stored-record",
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
