import ArgumentParser
import Synchronization
import UsageLedger
#if canImport(Glibc)
import Glibc
#endif

/// A small simulated orchestrator: tenants start, scale and stop apps, tasks and service instances
/// over simulated days, and every event goes through the library. Deterministic: same seed, same log.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a simulated orchestrator against a demo ledger and show what it recorded.",
        discussion: """
            The orchestrator starts, scales and stops apps, tasks and service instances of three tenants, rolls \
            up every simulated hour, compacts every simulated night, and re-adopts what runs once (a baseline \
            reseed). Running it again starts the demo ledger afresh and prints the same figures; it replaces \
            only a directory that an earlier demo made.
            """)
    @Option(name: .long, help: ArgumentHelp("The demo ledger directory.", valueName: "PATH")) var db: String =
        "demo-ledger"
    @Option(help: "Simulated days (compaction keeps the last \(CompactionOptions.defaultCutoffAgeDays)).")
    var days: Int = 40
    @Option(help: "Seed of the simulation.") var seed: UInt64 = 42

    /// The file that marks a directory as one the demo made, and so may replace.
    static let marker = "DEMO-LEDGER"

    /// Starts afresh: removes a ledger an earlier demo made, refuses any other non-empty directory.
    private func prepareDirectory() throws {
        guard let directory = opendir(db) else { return }  // missing: the ledger creates it
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(directory)
        guard !names.isEmpty else { return }
        guard names.contains(Self.marker) else {
            throw ValidationError("'\(db)' exists and was not made by the demo; pass another --db")
        }
        for name in ["data.mdb", "lock.mdb", "compaction.lock", Self.marker] where names.contains(name) {
            guard unlink(db + "/" + name) == 0 else {
                throw ValidationError("cannot replace the demo ledger at '\(db)': \(String(cString: strerror(errno)))")
            }
        }
    }

    func run() throws {
        guard (2...120).contains(days) else { throw ValidationError("--days must be 2 to 120") }
        try prepareDirectory()
        let start = try Timestamp(rfc3339: "2026-10-01T00:00:00Z")
        let clock = SimulatedClock(start)
        var options = LedgerOptions()
        options.clock = LedgerClock { clock.now }
        options.durability = .noMetaSync
        let ledger = try Ledger(path: db, options: options)
        if let file = fopen(db + "/" + Self.marker, "w") {
            fputs("made by usage-ledger demo; the next demo run replaces this ledger\n", file)
            fclose(file)
        }

        var simulation = Simulation(seed: seed, start: start)
        var totals = (appended: 0, duplicates: 0, rejected: 0)
        var compaction = (runs: 0, pruned: 0, horizon: Timestamp?.none)
        var reseed = SeedSummary()
        let reseedHour = (days / 2) * 24
        for hour in 0..<(days * 24) {
            if hour == reseedHour {
                // The orchestrator restarts and re-adopts what it finds running. One tenant's database was
                // lost while it was down: the reseed stops it; what still runs gets no new event.
                clock.now = Timestamp(microseconds: start.microseconds + Int64(hour) * Timestamp.microsecondsPerHour)
                reseed = try ledger.seedBaselines(simulation.adopt(losing: "org-initech"), stopMissing: true)
            }
            let events = simulation.hour(hour)
            clock.now = Timestamp(microseconds: start.microseconds + Int64(hour + 1) * Timestamp.microsecondsPerHour)
            let result = try ledger.append(contentsOf: events)
            // The orchestrator rolls up every simulated hour, as it would on a timer...
            _ = try ledger.rollUp()
            // ...and runs the maintenance command's compaction every night.
            if hour % 24 == 23 {
                let summary = try ledger.compact()
                compaction.runs += 1
                compaction.pruned += summary.pruned.values.flatMap(\.values).reduce(0, +)
                compaction.horizon = summary.horizon
            }
            totals.appended += result.appendedCount
            totals.duplicates += result.duplicateCount
            totals.rejected += result.rejections.count
        }
        // An orchestrator retries a batch whose acknowledgement it lost: nothing is counted twice.
        let retry = try ledger.append(contentsOf: simulation.lastHourEvents)
        // A queue delivers a correction late: it lands in its resource's timeline, not at the end.
        let late = simulation.lateAdjustment(day: days - 1)
        let lateResult = try ledger.append(contentsOf: [late])

        print("UsageLedger demo: \(simulation.tenants.count) tenants over \(days) simulated days, ledger at \(db)\n")
        print(
            "recorded \(totals.appended) events (\(totals.duplicates) duplicates, \(totals.rejected) rejected), "
                + "rolled up every hour"
        )
        print(
            "retried the last batch of \(simulation.lastHourEvents.count) events: \(retry.appendedCount) "
                + "appended, \(retry.duplicateCount) duplicates"
        )
        let lateSeq = lateResult.outcomes.first?.seq.map(String.init) ?? "none"
        print("a late adjustment of \(late.resource) occurred at \(late.occurredAt), recorded as seq \(lateSeq)")
        print(
            "re-adopted running resources on day \(days / 2 + 1): \(reseed.alreadyRunning) already "
                + "running, \(reseed.baselinesAppended) baselines appended, \(reseed.stoppedMissing) stopped as missing"
        )
        print(
            "compacted \(compaction.runs) nights: \(compaction.pruned) events pruned, "
                + "horizon \(compaction.horizon?.rfc3339 ?? "none"); the opening events of what still runs are kept\n"
        )

        let end = clock.now
        print("what runs now (\(end)):")
        var current = TextTable("TENANT", "RUNNING", "INSTANCES", "MEMORY_MB", "DISK_MB", rightAligned: [1, 2, 3, 4])
        for tenant in simulation.tenants {
            let now = try ledger.currentUsage(owner: tenant)
            current.add(
                tenant, String(now.runningCount), String(now.totals["instances"] ?? 0),
                String(now.totals["memory_mb"] ?? 0),
                String(now.totals["disk_mb"] ?? 0))
        }
        print(current.rendered + "\n")
        let week = Timestamp(microseconds: end.microseconds - 7 * 86_400_000_000).hourFloor
        print("usage by day over the last 7 days (exact integers, rendered without rounding):")
        var usage = TextTable(
            "TENANT", "DAY", "RUNNING_SECONDS", "MEMORY_MB_SECONDS", "NETWORK_BYTES", rightAligned: [2, 3, 4])
        for tenant in simulation.tenants {
            let report = try ledger.usage(.owner(tenant), from: week, to: end, granularity: .day)
            for row in report.rows {
                usage.add(
                    tenant, String(row.periodStart.rfc3339.prefix(10)),
                    ExactDecimal.seconds(fromMicroseconds: row.amounts.runningMicroseconds),
                    ExactDecimal.seconds(fromMicroseconds: row.amounts.meterMicroseconds["memory_mb"] ?? 0),
                    String(row.amounts.adjustments["network_bytes"] ?? 0))
            }
        }
        print(usage.rendered + "\n")
        let lateDay = late.occurredAt.microseconds - late.occurredAt.microseconds % 86_400_000_000
        print(
            "timeline of \(late.resource) on its last day (the late adjustment sits in occurred_at order, not at the "
                + "end):"
        )
        printEvents(
            try ledger.history(of: late.resource).filter { $0.event.occurredAt.microseconds >= lateDay }, format: .table
        )
        let stats = try ledger.statistics()
        print(
            "\nledger: \(stats.eventsByKind.values.reduce(0, +)) events "
                + "recorded, \(stats.databases["events"]?.entries ?? 0) kept after compaction, \(stats.resources) "
                + "resources, next seq \(stats.nextSeq), rolled up to \(stats.watermark?.rfc3339 ?? "never"), "
                + "map \(stats.environment.usedBytes) bytes used"
        )
        let verified = try ledger.verify()
        print(
            verified.isConsistent
                ? "verify: consistent (\(verified.eventsReplayed) events replayed over \(verified.resourcesChecked) "
                    + "resources)"
                : "verify: \(verified.differenceCount) differences: \(verified.differences.joined(separator: "; "))")
        guard verified.isConsistent else { throw CommandExit(status: .differences) }
        print(
            """

            Explore it:
              swift run usage-ledger stats --db \(db) --format table
              swift run usage-ledger events --db \(db) --after \(max(0, (lateResult.outcomes.first?.seq ?? 10) - 10)) \
            --limit 10 --format table
              swift run usage-ledger history --db \(db) --resource \(late.resource) --format table
              swift run usage-ledger current --db \(db) --owner org-acme --format table
              swift run usage-ledger usage --db \(db) --owner org-globex --from \(week) --to \(end) \
            --granularity day --group-by resource --now \(end) --format table
            """)
    }
}

/// The demo's clock, advanced by the simulation.
final class SimulatedClock: Sendable {
    private let current: Mutex<Timestamp>
    init(_ start: Timestamp) { current = Mutex(start) }
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
    /// The events of the latest simulated hour, for the demo's retry.
    private(set) var lastHourEvents: [UsageEvent] = []

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

    private mutating func event(
        _ kind: EventKind, _ resource: ResourceID, owner: String, at: Timestamp,
        footprint: Meters? = nil, deltas: Meters? = nil, reason: String? = nil
    ) -> UsageEvent {
        eventNumber += 1
        return UsageEvent(
            id: "demo-\(eventNumber)", kind: kind, resource: resource, owner: owner, occurredAt: at,
            footprint: footprint, deltas: deltas, reason: reason)
    }

    /// What the orchestrator finds running when it re-adopts its resources: every app at its current
    /// size and every tenant's database, except the database of `lost`.
    func adopt(losing lost: String) -> [RunningResource] {
        var found = running.map { app, entry in
            RunningResource(
                resource: app, owner: entry.owner,
                footprint: ["instances": entry.instances, "memory_mb": 512 * entry.instances])
        }
        for tenant in tenants where tenant != lost {
            found.append(
                RunningResource(
                    resource: ResourceID(type: "service_instance", id: "\(tenant.dropFirst(4))-db"), owner: tenant,
                    footprint: ["memory_mb": 2048, "disk_mb": 10240]))
        }
        return found.sorted { $0.resource < $1.resource }
    }

    /// The events of simulated hour `hour`.
    mutating func hour(_ hour: Int) -> [UsageEvent] {
        let events = makeHour(hour)
        lastHourEvents = events
        return events
    }

    private mutating func makeHour(_ hour: Int) -> [UsageEvent] {
        let base = start.microseconds + Int64(hour) * Timestamp.microsecondsPerHour
        func at(minute: Int) -> Timestamp { Timestamp(microseconds: base + Int64(minute) * 60_000_000) }
        var events: [UsageEvent] = []
        for tenant in tenants {
            let short = String(tenant.dropFirst(4))
            if hour == 0 {
                // Recording begins: the database was already running, the apps start now.
                let database = ResourceID(type: "service_instance", id: "\(short)-db")
                events.append(
                    event(
                        .wasRunning, database, owner: tenant, at: at(minute: 0),
                        footprint: ["memory_mb": 2048, "disk_mb": 10240]))
                for n in 1...3 {
                    let app = ResourceID(type: "app", id: "\(short)-web-\(n)")
                    let instances = Int64(1 + random(3))
                    running[app] = (tenant, instances)
                    events.append(
                        event(
                            .started, app, owner: tenant, at: at(minute: n),
                            footprint: ["instances": instances, "memory_mb": 512 * instances]))
                }
            }
            if hour > 0, hour % 8 == 0 {
                // Scale one app: a beginning event while running changes the footprint.
                let app = ResourceID(type: "app", id: "\(short)-web-\(1 + random(3))")
                let instances = Int64(1 + random(4))
                running[app] = (tenant, instances)
                events.append(
                    event(
                        .started, app, owner: tenant, at: at(minute: 7),
                        footprint: ["instances": instances, "memory_mb": 512 * instances]))
            }
            if random(2) == 0 {
                // A short task that starts and stops within the hour.
                let task = ResourceID(type: "task", id: "\(short)-task-\(nextTask % 200 + 1)")
                nextTask += 1
                let begin = 5 + random(20)
                events.append(
                    event(.started, task, owner: tenant, at: at(minute: begin), footprint: ["memory_mb": 256]))
                events.append(event(.stopped, task, owner: tenant, at: at(minute: begin + 5 + random(30))))
            }
            if hour % 6 == 5 {
                let app = ResourceID(type: "app", id: "\(short)-web-1")
                events.append(
                    event(
                        .adjustment, app, owner: tenant, at: at(minute: 59),
                        deltas: ["network_bytes": Int64(1 + random(1000)) * 1_048_576], reason: "reconcile_hourly"))
            }
        }
        return events
    }

    /// A correction delivered late: it occurred before events already recorded for its resource.
    mutating func lateAdjustment(day: Int) -> UsageEvent {
        let app = ResourceID(type: "app", id: "globex-web-1")
        let at = Timestamp(
            microseconds: start.microseconds + Int64(day * 24 + 3) * Timestamp.microsecondsPerHour + 30 * 60_000_000)
        return event(
            .adjustment, app, owner: "org-globex", at: at, deltas: ["network_bytes": -4096], reason: "delivered_late")
    }
}
