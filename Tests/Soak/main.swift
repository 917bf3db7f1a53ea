// The soak: several processes append, query, roll up and compact one ledger for a number of minutes,
// then the driver prints throughput, latency percentiles and the result of `verify`.
//
//   ledger-soak --db PATH [--minutes M] [--appenders N] [--speed X]
//
// The ledger clock runs X times faster than real time (default 10,000: ten minutes cover about 69
// days), all processes reading it from the same real start, so that rollup and a 31-day compaction
// really have work to do within the run. Not part of the default test run: `make soak MINUTES=10`.
import Foundation
import LedgerCore
import UsageLedger

struct Settings {
    var db = ""
    var minutes = 1.0
    var appenders = 2
    var speed: Int64 = 10_000
    var role: String?
    var index = 0
    var startMicros: Int64 = 0
}

func parse() -> Settings {
    var settings = Settings()
    var arguments = CommandLine.arguments.dropFirst().makeIterator()
    while let name = arguments.next() {
        let value = arguments.next() ?? ""
        switch name {
        case "--db": settings.db = value
        case "--minutes": settings.minutes = Double(value) ?? settings.minutes
        case "--appenders": settings.appenders = Int(value) ?? settings.appenders
        case "--speed": settings.speed = Int64(value) ?? settings.speed
        case "--role": settings.role = value
        case "--index": settings.index = Int(value) ?? 0
        case "--start": settings.startMicros = Int64(value) ?? 0
        default:
            print("unknown option \(name)")
            exit(2)
        }
    }
    if settings.db.isEmpty {
        print("usage: ledger-soak --db PATH [--minutes M] [--appenders N] [--speed X]")
        exit(2)
    }
    return settings
}

func realMicros() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }

/// Latencies in microseconds, summarized.
struct Latencies {
    var samples: [Int64] = []
    mutating func time<R>(_ body: () throws -> R) rethrows -> R {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { samples.append(Int64((DispatchTime.now().uptimeNanoseconds - start) / 1000)) }
        return try body()
    }
    func summary(_ name: String) -> String {
        guard !samples.isEmpty else { return "\"\(name)\":null" }
        let sorted = samples.sorted()
        func p(_ q: Double) -> Int64 { sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
        return
            "\"\(name)\":{\"count\":\(sorted.count),\"p50_us\":\(p(0.5)),\"p99_us\":\(p(0.99)),"
            + "\"max_us\":\(sorted.last ?? 0)}"
    }
}

func runRole(_ settings: Settings) throws {
    let start = settings.startMicros, speed = settings.speed
    // The simulated clock starts 40 days before the real start, so that the first days can be compacted.
    let origin = start - 40 * 86_400_000_000
    let simulatedNow = { @Sendable () -> Timestamp in Timestamp(microseconds: origin + (realMicros() - start) * speed) }
    var options = LedgerOptions()
    options.clock = LedgerClock(simulatedNow)
    let ledger = try Ledger(path: settings.db, options: options)
    let deadline = start + Int64(settings.minutes * 60_000_000)
    var rng = SystemRandomNumberGenerator()
    switch settings.role {
    case "append":
        var latency = Latencies()
        var appended = 0, duplicates = 0, rejected: [String: Int] = [:], batch = 0
        var previous: [UsageEvent] = []
        while realMicros() < deadline {
            let now = simulatedNow().microseconds
            var events = (0..<100).map { n -> UsageEvent in
                // Resources shared by the appenders; a few events are late by up to an hour.
                let number = Int.random(in: 0..<2000, using: &rng)
                let resource = ResourceID(type: n % 5 == 0 ? "task" : "app", id: "r\(number)")
                let owner = "org-\(number % 8)"
                let late = n % 50 == 0 ? Int64.random(in: 0..<3_600_000_000, using: &rng) : 0
                let at = Timestamp(microseconds: now - late - Int64(100 - n))
                let id = "a\(settings.index)-\(batch)-\(n)"
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<5:
                    return UsageEvent(
                        id: id, kind: .started, resource: resource, owner: owner, occurredAt: at,
                        footprint: ["instances": Int64.random(in: 1...4, using: &rng), "memory_mb": 256])
                case 5..<9: return UsageEvent(id: id, kind: .stopped, resource: resource, owner: owner, occurredAt: at)
                default:
                    return UsageEvent(
                        id: id, kind: .adjustment, resource: resource, owner: owner, occurredAt: at,
                        deltas: ["bytes": 10])
                }
            }
            // Retries: a few events of the previous batch are sent again.
            events += previous.prefix(3)
            let result = try latency.time { try ledger.append(contentsOf: events) }
            appended += result.appendedCount
            duplicates += result.duplicateCount
            for (_, error) in result.rejections { rejected[error.code, default: 0] += 1 }
            previous = events
            batch += 1
        }
        let codes = rejected.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",")
        print(
            "{\"role\":\"append\",\"appended\":\(appended),\"duplicates\":\(duplicates),"
                + "\"rejected\":{\(codes)},\(latency.summary("batch_of_103"))}"
        )
    case "query":
        var current = Latencies(), usage = Latencies(), feed = Latencies()
        var cursor: UInt64 = 0, fed = 0
        while realMicros() < deadline {
            let owner = "org-\(Int.random(in: 0..<8, using: &rng))"
            _ = try current.time { try ledger.currentUsage(owner: owner) }
            let now = simulatedNow()
            _ = try usage.time {
                try ledger.usage(
                    .owner(owner), from: Timestamp(microseconds: now.microseconds - 7 * 86_400_000_000), to: now,
                    granularity: .day)
            }
            let page = try feed.time { try ledger.events(after: cursor, limit: 1000) }
            cursor = page.nextCursor
            fed += page.events.count
        }
        print(
            "{\"role\":\"query\",\"feed_events\":\(fed),\(current.summary("current")),"
                + "\(usage.summary("usage_7d_by_day")),\(feed.summary("feed_page_1000"))}"
        )
    default:
        var rollup = Latencies(), compaction = Latencies()
        var pruned = 0, compactions = 0
        var lastCompaction = realMicros()
        while realMicros() < deadline {
            _ = try rollup.time { try ledger.rollUp() }
            if realMicros() - lastCompaction > 5_000_000 {
                var compact = CompactionOptions()
                compact.batchSize = 2000
                let summary = try compaction.time { try ledger.compact(compact) }
                pruned += summary.pruned.values.flatMap(\.values).reduce(0, +)
                compactions += 1
                lastCompaction = realMicros()
            }
            usleep(500_000)
        }
        print(
            "{\"role\":\"maintain\",\"compactions\":\(compactions),"
                + "\"pruned\":\(pruned),\(rollup.summary("rollup")),\(compaction.summary("compaction"))}"
        )
    }
}

func drive(_ settings: Settings) throws {
    let start = realMicros()
    let me = URL(fileURLWithPath: CommandLine.arguments[0]).path
    var roles = (0..<settings.appenders).map { ("append", $0) }
    roles += [("query", 0), ("query", 1), ("maintain", 0)]
    var children: [(Process, Pipe)] = []
    for (role, index) in roles {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: me)
        process.arguments = [
            "--db", settings.db, "--minutes", "\(settings.minutes)", "--speed", "\(settings.speed)",
            "--role", role, "--index", "\(index)", "--start", "\(start)",
        ]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        children.append((process, out))
    }
    print(
        "soak: \(settings.appenders) appenders, 2 readers, 1 maintainer on \(settings.db) for \(settings.minutes) "
            + "min, clock ×\(settings.speed)"
    )
    var appended = 0
    var failed = false
    for (process, out) in children {
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus != 0 { failed = true }
        print(text.trimmingCharacters(in: .whitespacesAndNewlines))
        if let range = text.range(of: "\"appended\":") {
            appended += Int(text[range.upperBound...].prefix { $0.isNumber }) ?? 0
        }
    }
    let seconds = Double(realMicros() - start) / 1_000_000
    print(
        "appended \(appended) events in \(String(format: "%.0f", seconds)) "
            + "s: \(String(format: "%.0f", Double(appended) / seconds)) events/s"
    )
    let ledger = try Ledger(path: settings.db)
    let stats = try ledger.statistics()
    print(
        "events stored \(stats.databases["events"]?.entries ?? 0), resources \(stats.resources), "
            + "horizon \(stats.horizon?.rfc3339 ?? "none"), file \(stats.environment.usedBytes / 1_048_576) MiB"
    )
    let started = Date()
    let report = try ledger.verify()
    let verdict =
        report.isConsistent
        ? "consistent" : "\(report.differenceCount) differences: \(report.differences.prefix(3))"
    let verifySeconds = String(format: "%.1f", Date().timeIntervalSince(started))
    print("verify: \(verdict), \(report.eventsReplayed) events replayed in \(verifySeconds) s")
    if failed || !report.isConsistent { exit(1) }
}

let settings = parse()
do {
    if settings.role != nil { try runRole(settings) } else { try drive(settings) }
} catch {
    print("{\"error\":\"\(error)\"}")
    exit(1)
}
