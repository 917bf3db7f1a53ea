// swift-tools-version: 6.1
import PackageDescription
import Foundation

// SwiftPM names a path dependency after its directory, which a clone does not control: derive it.
let rootDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let rootPackageName = rootDirectory.lastPathComponent.lowercased()

let package = Package(
    name: "UsageLedgerBenchmarks",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // The deterministic workload generator shared by every benchmark.
        .target(
            name: "Workload",
            dependencies: [.product(name: "UsageLedger", package: rootPackageName)]
        ),
        // The workload as NDJSON, for profiling the command-line tool on the benchmarks' events.
        .executableTarget(name: "workload-ndjson", dependencies: ["Workload"]),
        .executableTarget(
            name: "LedgerBenchmarks",
            dependencies: [
                "Workload",
                .product(name: "UsageLedger", package: rootPackageName),
                .product(name: "LMDBStorage", package: rootPackageName),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/LedgerBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
