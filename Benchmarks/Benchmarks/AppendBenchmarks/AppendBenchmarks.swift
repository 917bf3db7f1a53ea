import Benchmark
import Foundation
import LMDBStorage
import UsageLedger

// Batched append through the ledger (validation, idempotency index, resource index, timeline) against
// the same number of records of the same size written straight into LMDB with MDB_APPEND, in one run.

let eventsPerRun = 100_000
let batchSize = 1000

/// A deterministic mix: long-running apps with scalings, short tasks, adjustments.
func workload(count: Int) -> [UsageEvent] {
    var state: UInt64 = 0x5EED
    func next(_ bound: UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return (z ^ (z >> 31)) % bound
    }
    let start: Int64 = 1_793_491_200_000_000  // 2026-11-01T00:00:00Z
    return (0..<count).map { n in
        let at = Timestamp(microseconds: start + Int64(n) * 1_000_000)
        let owner = "org-\(next(500))"
        switch next(10) {
        case 0:
            return UsageEvent(id: "b-\(n)", kind: .adjustment, resource: ResourceID(type: "app", id: "app-\(next(20_000))"),
                              owner: owner, occurredAt: at, deltas: ["network_bytes": Int64(next(1 << 30))])
        case 1, 2:
            return UsageEvent(id: "b-\(n)", kind: .stopped, resource: ResourceID(type: "task", id: "task-\(n - 1)"), owner: owner, occurredAt: at)
        default:
            return UsageEvent(id: "b-\(n)", kind: .started, resource: ResourceID(type: "task", id: "task-\(n)"), owner: owner, occurredAt: at,
                              footprint: ["instances": Int64(1 + next(4)), "memory_mb": Int64(256 * (1 + next(8)))])
        }
    }
}

func scratchDirectory() -> String {
    let path = NSTemporaryDirectory() + "usage-ledger-bench-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

let benchmarks: @Sendable () -> Void = {
    // One iteration appends 100,000 events (or records); events per second = 100,000 / wall clock.
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .mallocCountTotal, .peakMemoryResident],
                                           maxDuration: .seconds(60), maxIterations: 5)
    let events = workload(count: eventsPerRun)
    let recordSize = 120

    for durability in [Durability.full, Durability.noSync] {
        Benchmark("ledger append, batches of \(batchSize), \(durability.rawValue) (100k events)") { benchmark in
            let path = scratchDirectory()
            defer { try? FileManager.default.removeItem(atPath: path) }
            var options = LedgerOptions()
            options.durability = durability
            options.clock = .fixed(Timestamp(microseconds: 1_900_000_000_000_000))
            let ledger = try Ledger(path: path, options: options)
            benchmark.startMeasurement()
            var index = 0
            while index < events.count {
                let end = min(index + batchSize, events.count)
                _ = try ledger.append(contentsOf: events[index..<end])
                index = end
            }
            benchmark.stopMeasurement()
        }

        Benchmark("raw LMDB MDB_APPEND baseline, batches of \(batchSize), \(durability.rawValue) (100k records)") { benchmark in
            let path = scratchDirectory()
            defer { try? FileManager.default.removeItem(atPath: path) }
            var options = EnvironmentOptions()
            options.durability = durability
            let environment = try Environment(path: path, options: options)
            let database = try environment.openDatabases(["records"])[0]
            let value = [UInt8](repeating: 0xAB, count: recordSize)
            benchmark.startMeasurement()
            var seq: UInt64 = 1
            while seq <= UInt64(eventsPerRun) {
                try environment.write { txn in
                    for _ in 0..<batchSize {
                        try txn.put(database, BigEndianKey(seq), value, mode: .append)
                        seq += 1
                    }
                }
            }
            benchmark.stopMeasurement()
        }
    }
}
