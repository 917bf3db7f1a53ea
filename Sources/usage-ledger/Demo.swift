import ArgumentParser
import LMDBStorage
import UsageLedger

/// A small simulated orchestrator: tenants start, scale and stop apps, tasks and service instances
/// over simulated days, and every event goes through the library. Deterministic: same seed, same log.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a simulated orchestrator against a demo ledger and show what it recorded.",
        discussion: "Running it again on the same ledger records nothing new: every event is a duplicate of one already recorded.")
    @Option(name: .long, help: ArgumentHelp("The demo ledger directory.", valueName: "PATH")) var db: String = "demo-ledger"
    @Option(help: "Simulated days.") var days: Int = 3
    @Option(help: "Seed of the simulation.") var seed: UInt64 = 42

    func run() throws {
        guard (1...60).contains(days) else { throw ValidationError("--days must be 1 to 60") }
        let start = try Timestamp(rfc3339: "2026-11-01T00:00:00Z")
        let clock = SimulatedClock(start)
        var options = LedgerOptions()
        options.clock = LedgerClock { clock.now }
        options.durability = .noMetaSync
        let ledger = try Ledger(path: db, options: options)

        var simulation = Simulation(seed: seed, start: start)
        var totals = (appended: 0, duplicates: 0, rejected: 0)
        var firstBatch: [UsageEvent] = []
        for hour in 0..<(days * 24) {
            let events = simulation.hour(hour)
            clock.now = Timestamp(microseconds: start.microseconds + Int64(hour + 1) * Timestamp.microsecondsPerHour)
            let result = try ledger.append(contentsOf: events)
            // The orchestrator rolls up every simulated hour, as it would on a timer.
            _ = try ledger.rollUp()
            if hour == 0 { firstBatch = events }
            totals.appended += result.appendedCount
            totals.duplicates += result.duplicateCount
            totals.rejected += result.rejections.count
        }
        // An orchestrator retries a batch whose acknowledgement it lost: nothing is counted twice.
        let retry = try ledger.append(contentsOf: firstBatch)
        // A queue delivers a correction late: it lands in its resource's timeline, not at the end.
        let late = simulation.lateAdjustment()
        let lateResult = try ledger.append(contentsOf: [late])

        print("UsageLedger demo: \(simulation.tenants.count) tenants over \(days) simulated days, ledger at \(db)\n")
        print("recorded \(totals.appended) events (\(totals.duplicates) duplicates, \(totals.rejected) rejected)")
        print("retried the first batch of \(firstBatch.count) events: \(retry.appendedCount) appended, \(retry.duplicateCount) duplicates")
        let lateSeq = lateResult.outcomes.first?.seq.map(String.init) ?? "none"
        print("a late adjustment of \(late.resource) occurred at \(late.occurredAt), recorded as seq \(lateSeq)\n")

        let end = clock.now
        print("what runs now (\(end)):")
        var current = TextTable("TENANT", "RUNNING", "INSTANCES", "MEMORY_MB", "DISK_MB", rightAligned: [1, 2, 3, 4])
        for tenant in simulation.tenants {
            let now = try ledger.currentUsage(owner: tenant)
            current.add(tenant, String(now.runningCount), String(now.totals["instances"] ?? 0), String(now.totals["memory_mb"] ?? 0),
                        String(now.totals["disk_mb"] ?? 0))
        }
        print(current.rendered + "\n")
        print("usage by day (exact integers, rendered without rounding):")
        var usage = TextTable("TENANT", "DAY", "RUNNING_SECONDS", "MEMORY_MB_SECONDS", "NETWORK_BYTES", rightAligned: [2, 3, 4])
        for tenant in simulation.tenants {
            let report = try ledger.usage(.owner(tenant), from: start, to: end, granularity: .day)
            for row in report.rows {
                usage.add(tenant, String(row.periodStart.rfc3339.prefix(10)),
                          ExactDecimal.seconds(fromMicroseconds: row.amounts.runningMicroseconds),
                          ExactDecimal.seconds(fromMicroseconds: row.amounts.meterMicroseconds["memory_mb"] ?? 0),
                          String(row.amounts.adjustments["network_bytes"] ?? 0))
            }
        }
        print(usage.rendered + "\n")
        print("timeline of \(late.resource) (the late adjustment sits in occurred_at order):")
        printEvents(try ledger.history(of: late.resource), format: .table)
        let stats = try ledger.statistics()
        print("\nledger: \(stats.eventsByKind.values.reduce(0, +)) events, \(stats.resources) resources, next seq \(stats.nextSeq), rolled up to \(stats.watermark?.rfc3339 ?? "never"), map \(stats.environment.usedBytes) bytes used")
        let verified = try ledger.verify()
        print(verified.isConsistent
              ? "verify: consistent (\(verified.eventsReplayed) events replayed over \(verified.resourcesChecked) resources)"
              : "verify: \(verified.differenceCount) differences: \(verified.differences.joined(separator: "; "))")
        guard verified.isConsistent else { throw CommandExit(status: verifyMismatchStatus) }
        print("""

            Explore it:
              swift run usage-ledger stats --db \(db) --format table
              swift run usage-ledger events --db \(db) --after 0 --limit 10 --format table
              swift run usage-ledger history --db \(db) --resource \(late.resource) --format table
              swift run usage-ledger current --db \(db) --owner org-acme --format table
              swift run usage-ledger usage --db \(db) --owner org-globex --from 2026-11-01T00:00:00Z --to 2026-11-04T00:00:00Z --granularity day --group-by resource --now \(end) --format table
            """)
    }
}

/// The demo's clock, advanced by the simulation.
final class SimulatedClock: Sendable {
    private let current: Locked<Timestamp>
    init(_ start: Timestamp) { current = Locked(start) }
    var now: Timestamp {
        get { current.withLock { $0 } }
        set { current.withLock { $0 = newValue } }
    }
}

/// A deterministic generator of orchestrator events (SplitMix64).
struct Simulation {
    let tenants = ["org-acme", "org-globex", "org-initech"]
    private var state: UInt64
    private let start: Timestamp
    private var running: [ResourceID: (owner: String, instances: Int64)] = [:]
    private var nextTask = 1
    private var eventNumber = 0

    init(seed: UInt64, start: Timestamp) {
        state = seed
        self.start = start
    }

    private mutating func random(_ bound: Int) -> Int {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int((z ^ (z >> 31)) % UInt64(bound))
    }

    func resources(of tenant: String) -> [ResourceID] {
        let short = String(tenant.dropFirst(4))
        var ids = (1...3).map { ResourceID(type: "app", id: "\(short)-web-\($0)") }
        ids.append(ResourceID(type: "service_instance", id: "\(short)-db"))
        ids += (1...200).map { ResourceID(type: "task", id: "\(short)-task-\($0)") }
        return ids
    }

    private mutating func event(_ kind: EventKind, _ resource: ResourceID, owner: String, at: Timestamp,
                                footprint: Meters? = nil, deltas: Meters? = nil, reason: String? = nil) -> UsageEvent {
        eventNumber += 1
        return UsageEvent(id: "demo-\(eventNumber)", kind: kind, resource: resource, owner: owner, occurredAt: at,
                          footprint: footprint, deltas: deltas, reason: reason)
    }

    /// The events of simulated hour `hour`.
    mutating func hour(_ hour: Int) -> [UsageEvent] {
        let base = start.microseconds + Int64(hour) * Timestamp.microsecondsPerHour
        func at(minute: Int) -> Timestamp { Timestamp(microseconds: base + Int64(minute) * 60_000_000) }
        var events: [UsageEvent] = []
        for tenant in tenants {
            let short = String(tenant.dropFirst(4))
            if hour == 0 {
                // Recording begins: the database was already running, the apps start now.
                let database = ResourceID(type: "service_instance", id: "\(short)-db")
                events.append(event(.wasRunning, database, owner: tenant, at: at(minute: 0), footprint: ["memory_mb": 2048, "disk_mb": 10240]))
                for n in 1...3 {
                    let app = ResourceID(type: "app", id: "\(short)-web-\(n)")
                    let instances = Int64(1 + random(3))
                    running[app] = (tenant, instances)
                    events.append(event(.started, app, owner: tenant, at: at(minute: n), footprint: ["instances": instances, "memory_mb": 512 * instances]))
                }
            }
            if hour > 0, hour % 8 == 0 {
                // Scale one app: a beginning event while running changes the footprint.
                let app = ResourceID(type: "app", id: "\(short)-web-\(1 + random(3))")
                let instances = Int64(1 + random(4))
                running[app] = (tenant, instances)
                events.append(event(.started, app, owner: tenant, at: at(minute: 7), footprint: ["instances": instances, "memory_mb": 512 * instances]))
            }
            if random(2) == 0 {
                // A short task that starts and stops within the hour.
                let task = ResourceID(type: "task", id: "\(short)-task-\(nextTask % 200 + 1)")
                nextTask += 1
                let begin = 5 + random(20)
                events.append(event(.started, task, owner: tenant, at: at(minute: begin), footprint: ["memory_mb": 256]))
                events.append(event(.stopped, task, owner: tenant, at: at(minute: begin + 5 + random(30))))
            }
            if hour % 6 == 5 {
                let app = ResourceID(type: "app", id: "\(short)-web-1")
                events.append(event(.adjustment, app, owner: tenant, at: at(minute: 59),
                                    deltas: ["network_bytes": Int64(1 + random(1000)) * 1_048_576], reason: "reconcile_hourly"))
            }
        }
        return events
    }

    /// A correction delivered late: it occurred before events already recorded for its resource.
    mutating func lateAdjustment() -> UsageEvent {
        let app = ResourceID(type: "app", id: "globex-web-1")
        let at = Timestamp(microseconds: start.microseconds + 3 * Timestamp.microsecondsPerHour + 30 * 60_000_000)
        return event(.adjustment, app, owner: "org-globex", at: at, deltas: ["network_bytes": -4096], reason: "delivered_late")
    }
}
