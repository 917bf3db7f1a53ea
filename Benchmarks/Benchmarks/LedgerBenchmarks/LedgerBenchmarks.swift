import Benchmark
import Foundation
import LMDBStorage
import Synchronization
import UsageLedger
import Workload

// Every benchmark draws from one deterministic workload (see Sources/Workload). Its size comes from
// USAGE_LEDGER_BENCH_EVENTS (default 100,000; `make bench-large` runs 1M). Each figure is measured in the
// same run as the raw-LMDB baseline it is compared with.

let eventCount = benchmarkEventCount
let eventsPerSecond = BenchmarkMetric.custom("events per second", polarity: .prefersLarger, useScalingFactor: false)
let latencyP99 = BenchmarkMetric.custom(
    "p99 latency of a call (µs)", polarity: .prefersSmaller, useScalingFactor: false)
let commitsPerSecond = BenchmarkMetric.custom("commits per second", polarity: .prefersLarger, useScalingFactor: false)

/// A duration in whole microseconds.
func microseconds(_ duration: Duration) -> UInt64 {
    let (seconds, attoseconds) = duration.components
    return UInt64(max(0, seconds)) * 1_000_000 + UInt64(max(0, attoseconds)) / 1_000_000_000_000
}

/// A value built on first use and shared by a benchmark's iterations.
final class Lazy<Value>: @unchecked Sendable {
    private let make: () throws -> Value
    private let value = Mutex<Value?>(nil)
    init(_ make: @escaping () throws -> Value) { self.make = make }
    func get() throws -> Value {
        try value.withLock { stored in
            if let stored { return stored }
            let made = try make()
            stored = made
            return made
        }
    }
}

func ledgerOptions(_ durability: Durability, clock: Timestamp) -> LedgerOptions {
    var options = LedgerOptions()
    options.durability = durability
    options.clock = .fixed(clock)
    return options
}

/// Where the shared fixture lives; removed when the benchmark process exits (one process runs one
/// benchmark, and a rolled-up 1M-event fixture takes about 12 GB).
let fixtureDirectory: String = {
    let path = scratchDirectory("loaded")
    atexit { try? FileManager.default.removeItem(atPath: fixtureDirectory) }
    return path
}()

/// A ledger holding the whole workload (not rolled up): the fixture of `current`, which reads no rows, so
/// that it also runs at 10M events, whose rows would need about 120 GB (docs/capacity.md).
let appended = Lazy { () throws -> (Ledger, Workload) in
    let workload = Workload(count: eventCount)
    let ledger = try Ledger(path: fixtureDirectory, options: ledgerOptions(.noSync, clock: workload.end))
    try appendAll(workload.events, to: ledger)
    // One owner running 1,000 resources, the subject of the `current` benchmark.
    let big = (0..<1000).map { n in
        UsageEvent(
            id: "big-\(n)", kind: .started, resource: ResourceID(type: "app", id: "big-\(n)"), owner: "org-big",
            occurredAt: workload.start, footprint: ["instances": 1, "memory_mb": 512])
    }
    _ = try ledger.append(contentsOf: big)
    return (ledger, workload)
}

/// The same ledger rolled up: the fixture of the usage and verify benchmarks.
let loaded = Lazy { () throws -> (Ledger, Workload) in
    let (ledger, workload) = try appended.get()
    _ = try ledger.rollUp(now: workload.end)
    return (ledger, workload)
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .peakMemoryResident],
        maxDuration: .seconds(30), maxIterations: 5)
    compactionBenchmarks()
    let workload = Lazy { Workload(count: eventCount) }

    // 1. Batched append against raw MDB_APPEND of the same number of 120-byte records.
    for durability in [Durability.full, Durability.noSync] {
        Benchmark(
            "1 append, batches of 1000, \(durability.rawValue)",
            configuration: .init(metrics: [.wallClock, .mallocCountTotal, eventsPerSecond])
        ) { benchmark in
            let work = try workload.get()
            let path = scratchDirectory("append")
            defer { try? FileManager.default.removeItem(atPath: path) }
            let ledger = try Ledger(path: path, options: ledgerOptions(durability, clock: work.end))
            let started = ContinuousClock.now
            benchmark.startMeasurement()
            var index = 0
            while index < work.events.count {
                _ = try ledger.append(contentsOf: work.events[index..<min(index + 1000, work.events.count)])
                index += 1000
            }
            benchmark.stopMeasurement()
            benchmark.measurement(eventsPerSecond, rate(work.events.count, since: started))
        }

        Benchmark(
            "1 raw LMDB MDB_APPEND baseline, batches of 1000, \(durability.rawValue)",
            configuration: .init(metrics: [.wallClock, eventsPerSecond])
        ) { benchmark in
            let path = scratchDirectory("raw")
            defer { try? FileManager.default.removeItem(atPath: path) }
            var options = EnvironmentOptions()
            options.durability = durability
            let environment = try Environment(path: path, options: options)
            let records = try Table<BigEndianUInt64, RawBytes>("records", in: environment.openTables(["records"]))
            let value = [UInt8](repeating: 0xAB, count: 120)
            let started = ContinuousClock.now
            benchmark.startMeasurement()
            var next: UInt64 = 1
            while next <= UInt64(eventCount) {
                let first = next
                try environment.write { (txn) throws(StorageError) in
                    for seq in first..<min(first + 1000, UInt64(eventCount) + 1) {
                        try txn.put(records, seq, value, mode: .append)
                    }
                }
                next = first + 1000
            }
            benchmark.stopMeasurement()
            benchmark.measurement(eventsPerSecond, rate(eventCount, since: started))
        }
    }

    // 2. Single-event append latency: one event per iteration, one commit each.
    for durability in [Durability.full, Durability.noMetaSync] {
        let single = Lazy { () throws -> (Ledger, Workload, Counter) in
            let work = Workload(count: 20_000, seed: 77)
            return (
                try Ledger(path: scratchDirectory("single"), options: ledgerOptions(durability, clock: work.end)), work,
                Counter()
            )
        }
        Benchmark(
            "2 append one event, \(durability.rawValue)",
            configuration: .init(metrics: [.wallClock], maxDuration: .seconds(10), maxIterations: 2000)
        ) { benchmark in
            let (ledger, work, next) = try single.get()
            let index = next.value.add(1, ordering: .relaxed).oldValue % work.events.count
            benchmark.startMeasurement()
            _ = try ledger.append(contentsOf: [work.events[index]])
            benchmark.stopMeasurement()
        }
    }

    // 2. Concurrent appenders: does throughput rise with more threads (group commit), or collapse?
    for threads in [1, 2, 4] {
        Benchmark(
            "2 concurrent appenders, \(threads) threads, batches of 100, full",
            configuration: .init(metrics: [.wallClock, eventsPerSecond], maxIterations: 3)
        ) { benchmark in
            let work = Workload(count: 20_000, seed: 91)
            let path = scratchDirectory("concurrent-\(threads)")
            defer { try? FileManager.default.removeItem(atPath: path) }
            let ledger = try Ledger(path: path, options: ledgerOptions(.full, clock: work.end))
            let events = work.events
            let failures = Atomic<Int>(0)
            let done = DispatchSemaphore(value: 0)
            let started = ContinuousClock.now
            benchmark.startMeasurement()
            for thread in 0..<threads {
                Thread {
                    // Thread t appends batches t, t + threads, ...: disjoint slices of one workload.
                    var batch = thread
                    while batch * 100 < events.count {
                        do {
                            _ = try ledger.append(
                                contentsOf: events[(batch * 100)..<min(batch * 100 + 100, events.count)])
                        } catch {
                            failures.add(1, ordering: .relaxed)
                        }
                        batch += threads
                    }
                    done.signal()
                }.start()
            }
            for _ in 0..<threads { done.wait() }
            benchmark.stopMeasurement()
            precondition(failures.load(ordering: .relaxed) == 0, "an append failed")
            benchmark.measurement(eventsPerSecond, rate(events.count, since: started))
        }
    }

    // 2. Single-event appends (one `append(_:)` call per event) from 1 and 16 threads, full durability:
    // group commit combines the calls that queue while a commit runs. Commits per second beside it; each
    // commit with `full` durability costs LMDB two synchronous writes: an fdatasync of the data pages, then
    // the meta page through a descriptor opened O_DSYNC (strace counts one fdatasync per commit).
    for threads in [1, 16] {
        Benchmark(
            "2 single-event appenders, \(threads) threads, full",
            configuration: .init(
                metrics: [.wallClock, eventsPerSecond, latencyP99, commitsPerSecond], maxIterations: 3)
        ) { benchmark in
            let work = Workload(count: 4_000, seed: 93)
            let path = scratchDirectory("single-\(threads)")
            defer { try? FileManager.default.removeItem(atPath: path) }
            let ledger = try Ledger(path: path, options: ledgerOptions(.full, clock: work.end))
            let events = work.events
            let failures = Atomic<Int>(0)
            let latencies = Mutex<[UInt64]>([])
            let done = DispatchSemaphore(value: 0)
            let started = ContinuousClock.now
            benchmark.startMeasurement()
            for thread in 0..<threads {
                Thread {
                    var mine: [UInt64] = []
                    var index = thread
                    while index < events.count {
                        let begin = ContinuousClock.now
                        do throws(LedgerError) { try ledger.append(events[index]) } catch {
                            if !error.isRejection { failures.add(1, ordering: .relaxed) }
                        }
                        mine.append(microseconds(ContinuousClock.now - begin))
                        index += threads
                    }
                    latencies.withLock { $0 += mine }
                    done.signal()
                }.start()
            }
            for _ in 0..<threads { done.wait() }
            benchmark.stopMeasurement()
            precondition(failures.load(ordering: .relaxed) == 0, "an append failed")
            let seconds = Double(microseconds(ContinuousClock.now - started)) / 1e6
            let sorted = latencies.withLock { $0.sorted() }
            benchmark.measurement(eventsPerSecond, rate(events.count, since: started))
            benchmark.measurement(latencyP99, Int(sorted[min(sorted.count - 1, sorted.count * 99 / 100)]))
            benchmark.measurement(commitsPerSecond, Int(Double(ledger.appendCommitCounts.transactions) / seconds))
        }
    }

    // 3. NDJSON import through the CLI's code path (NDJSONIngest), parsing included.
    Benchmark(
        "3 import NDJSON",
        configuration: .init(metrics: [.wallClock, .peakMemoryResident, .mallocCountTotal, eventsPerSecond])
    ) { benchmark in
        let work = try workload.get()
        let directory = scratchDirectory("import")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/events.ndjson"
        try work.ndjson.write(to: URL(fileURLWithPath: file))
        let ledger = try Ledger(path: directory + "/ledger", options: ledgerOptions(.noSync, clock: work.end))
        let fd = open(file, O_RDONLY)
        defer { close(fd) }
        let started = ContinuousClock.now
        benchmark.startMeasurement()
        let summary = try NDJSONIngest().run(fd: fd, into: ledger, onRejection: { _ in })
        benchmark.stopMeasurement()
        benchmark.measurement(eventsPerSecond, rate(summary.lines, since: started))
    }

    // 4. `current` for one owner running 1,000 resources: totals only, and with the listing.
    let queries = Benchmark.Configuration(metrics: [.wallClock], maxDuration: .seconds(5), maxIterations: 10_000)
    Benchmark("4 current totals, one owner of 1000 running", configuration: queries) { benchmark in
        let (ledger, _) = try appended.get()
        benchmark.startMeasurement()
        blackHole(try ledger.currentUsage(owner: "org-big", listingResources: false))
    }
    Benchmark(
        "4 current with listing, one owner of 1000 running",
        configuration: .init(metrics: [.wallClock], maxDuration: .seconds(5), maxIterations: 1000)
    ) { benchmark in
        let (ledger, _) = try appended.get()
        benchmark.startMeasurement()
        blackHole(try ledger.currentUsage(owner: "org-big"))
    }

    // 5. Usage: one owner over 30 days by hour; one resource over the whole period.
    Benchmark(
        "5 usage, one owner, 30 days by hour",
        configuration: .init(metrics: [.wallClock], maxDuration: .seconds(5), maxIterations: 1000)
    ) { benchmark in
        let (ledger, work) = try loaded.get()
        benchmark.startMeasurement()
        blackHole(
            try ledger.usage(
                .owner("org-7"), from: work.start,
                to: Timestamp(microseconds: work.start.microseconds + 30 * 86_400_000_000),
                granularity: .hour))
    }
    // An owner's month by day in UTC, and in zones (issue 16: at most 2x UTC). Berlin's boundaries are whole
    // UTC hours (owner_hourly answers); Kolkata's fall at :30, so each day's first hour is split exactly.
    for zoneName in ["UTC", "Europe/Berlin", "Asia/Kolkata"] {
        Benchmark("5 usage, one owner, 30 days by day, \(zoneName)", configuration: queries) { benchmark in
            let (ledger, work) = try loaded.get()
            let zone = try UsageTimeZone(zoneName)
            benchmark.startMeasurement()
            blackHole(
                try ledger.usage(
                    .owner("org-7"), from: work.start,
                    to: Timestamp(microseconds: work.start.microseconds + 30 * 86_400_000_000),
                    granularity: .day, timeZone: zone))
        }
    }
    Benchmark("5 usage, one resource, whole period by day", configuration: queries) { benchmark in
        let (ledger, work) = try loaded.get()
        benchmark.startMeasurement()
        blackHole(
            try ledger.usage(
                .resource(ResourceID(type: "app", id: "app-7")), from: work.start, to: work.end, granularity: .day))
    }

    // 6. Rollup rate (resource-hours per second) and verify replay (events per second).
    let resourceHoursPerSecond = BenchmarkMetric.custom(
        "resource-hours per second", polarity: .prefersLarger, useScalingFactor: false)
    // What the ledger stores (issue 12): bytes of pages in use per event, in all and in the snapshots.
    let bytesPerEvent = BenchmarkMetric.custom(
        "ledger bytes per event", polarity: .prefersSmaller, useScalingFactor: false)
    let snapshotBytesPerEvent = BenchmarkMetric.custom(
        "snapshot bytes per event (hourly, steady, owner_hourly)", polarity: .prefersSmaller, useScalingFactor: false)
    Benchmark(
        "6 rollup of the whole period",
        configuration: .init(metrics: [.wallClock, resourceHoursPerSecond, bytesPerEvent, snapshotBytesPerEvent])
    ) {
        benchmark in
        let work = try workload.get()
        let path = scratchDirectory("rollup")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ledger = try Ledger(path: path, options: ledgerOptions(.noSync, clock: work.end))
        try appendAll(work.events, to: ledger)
        let started = ContinuousClock.now
        benchmark.startMeasurement()
        let summary = try ledger.rollUp(now: work.end)
        benchmark.stopMeasurement()
        benchmark.measurement(resourceHoursPerSecond, rate(summary.resourceHours, since: started))
        let databases = try ledger.statistics().databases
        let events = max(1, work.events.count)
        let snapshots = ["hourly", "steady", "owner_hourly"].reduce(0) { $0 + (databases[$1]?.bytes ?? 0) }
        benchmark.measurement(bytesPerEvent, databases.values.reduce(0) { $0 + $1.bytes } / events)
        benchmark.measurement(snapshotBytesPerEvent, snapshots / events)
    }
    Benchmark(
        "6 verify (replay every timeline)",
        configuration: .init(metrics: [.wallClock, .peakMemoryResident, eventsPerSecond], maxIterations: 3)
    ) { benchmark in
        let (ledger, _) = try loaded.get()
        let started = ContinuousClock.now
        benchmark.startMeasurement()
        let report = try ledger.verify()
        benchmark.stopMeasurement()
        benchmark.measurement(eventsPerSecond, rate(report.eventsReplayed, since: started))
    }
}

/// 7. Compaction of the workload's first half, with an appender committing one event at a time meanwhile.
let examinedPerSecond = BenchmarkMetric.custom(
    "events examined per second", polarity: .prefersLarger, useScalingFactor: false)
let appenderP99 = BenchmarkMetric.custom(
    "appender p99 during compaction (µs)", polarity: .prefersSmaller, useScalingFactor: false)
let appenderMax = BenchmarkMetric.custom(
    "appender max during compaction (µs)", polarity: .prefersSmaller, useScalingFactor: false)

let compactionBenchmarks: @Sendable () -> Void = {
    Benchmark(
        "7 compaction with an appender meanwhile, full",
        configuration: .init(metrics: [.wallClock, examinedPerSecond, appenderP99, appenderMax], maxIterations: 3)
    ) { benchmark in
        let work = Workload(count: eventCount)
        let path = scratchDirectory("compaction")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ledger = try Ledger(path: path, options: ledgerOptions(.full, clock: work.end))
        try appendAll(work.events, to: ledger)
        _ = try ledger.rollUp(now: work.end)
        // The horizon falls in the middle of the workload's 30 days.
        var options = CompactionOptions()
        options.now = Timestamp(microseconds: work.end.microseconds + 16 * 86_400_000_000)
        let stop = Atomic<Bool>(false)
        let latencies = Mutex<[Int]>([])
        let appenderDone = DispatchSemaphore(value: 0)
        Thread {
            var n = 0
            while !stop.load(ordering: .relaxed) {
                let event = UsageEvent(
                    id: "live-\(n)", kind: .adjustment, resource: ResourceID(type: "app", id: "live"),
                    owner: "org-live",
                    occurredAt: work.end, deltas: ["bytes": 1])
                let before = ContinuousClock.now
                _ = try? ledger.append(contentsOf: [event])
                let micros = (ContinuousClock.now - before).components
                latencies.withLock {
                    $0.append(Int(micros.seconds) * 1_000_000 + Int(micros.attoseconds / 1_000_000_000_000))
                }
                n += 1
            }
            appenderDone.signal()
        }.start()
        let started = ContinuousClock.now
        benchmark.startMeasurement()
        let summary = try ledger.compact(options)
        benchmark.stopMeasurement()
        let examined = rate(summary.eventsExamined, since: started)
        stop.store(true, ordering: .relaxed)
        appenderDone.wait()
        let sorted = latencies.withLock { $0 }.sorted()
        benchmark.measurement(examinedPerSecond, examined)
        if !sorted.isEmpty {
            benchmark.measurement(appenderP99, sorted[min(sorted.count - 1, sorted.count * 99 / 100)])
            benchmark.measurement(appenderMax, sorted[sorted.count - 1])
        }
    }
}

/// Appends `events` in transactions of 1,000: how every fixture is loaded.
func appendAll(_ events: [UsageEvent], to ledger: Ledger) throws {
    var index = 0
    while index < events.count {
        _ = try ledger.append(contentsOf: events[index..<min(index + 1000, events.count)])
        index += 1000
    }
}

/// A shared position in the single-append workload.
final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

/// Events per second from a count and a start instant.
func rate(_ count: Int, since start: ContinuousClock.Instant) -> Int {
    let elapsed = ContinuousClock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return seconds > 0 ? Int(Double(count) / seconds) : 0
}
