// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "UsageLedger",
    products: [
        .library(name: "UsageLedger", targets: ["UsageLedger"]),
        // The storage layer on its own, for embedders and for the raw-LMDB baselines in Benchmarks/.
        .library(name: "LMDBStorage", targets: ["LMDBStorage"]),
        .executable(name: "usage-ledger", targets: ["usage-ledger"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        // Only for `make docs` (swift package generate-documentation); no target depends on it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // The C layer: LMDB as Debian ships it, nothing more.
        .systemLibrary(
            name: "CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"])]
        ),
        // A thin, safe Swift layer over LMDB: environment, scoped transactions, cursors, typed keys.
        .target(name: "LMDBStorage", dependencies: ["CLMDB"]),
        // The ledger's domain: events, validation, the JSON wire codec and the binary record codec.
        .target(name: "LedgerCore"),
        // The ledger itself: the append-only log on LMDB, and (later) projections and compaction.
        .target(name: "UsageLedger", dependencies: [
            "LMDBStorage", "LedgerCore",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // The command-line tool: a thin shell over the library.
        .executableTarget(
            name: "usage-ledger",
            dependencies: [
                "UsageLedger",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // A child process for the crash tests: appends batches and acknowledges each after commit.
        .executableTarget(name: "ledger-crash-worker", dependencies: ["UsageLedger", "LedgerCore"], path: "Tests/CrashWorker"),
        // Fuzz targets for the event decoder and the stored-record decoders (`make fuzz`); built normally
        // they replay a corpus, which the tests do with the seeds under Tests/Fuzz/Corpus.
        // The soak (make soak): processes appending, querying, rolling up and compacting for minutes.
        .executableTarget(name: "ledger-soak", dependencies: ["UsageLedger", "LedgerCore"], path: "Tests/Soak"),
        .target(name: "CFuzzSupport", path: "Tests/Fuzz/CFuzzSupport"),
        .executableTarget(name: "fuzz-event-json", dependencies: ["UsageLedger", "CFuzzSupport"], path: "Tests/Fuzz/EventJSON"),
        .executableTarget(name: "fuzz-stored-record", dependencies: ["UsageLedger", "CFuzzSupport"], path: "Tests/Fuzz/StoredRecord"),
        .testTarget(
            name: "UsageLedgerTests",
            dependencies: [
                "UsageLedger", "LMDBStorage", "LedgerCore", "usage-ledger", "ledger-crash-worker", "fuzz-event-json", "fuzz-stored-record",
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
