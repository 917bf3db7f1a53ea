import Foundation
import PropertyBased
import Testing
@testable import LMDBStorage
@testable import UsageLedger

/// With the test clock at 2026-11-24T12:00:00Z and the default 31 days, the horizon is 2026-10-24T12:00:00Z.
let horizon = ts("2026-10-24T12:00:00Z")

/// Compacts with the test clock, after rolling up (compaction refuses to run before that).
@discardableResult
func rollUpAndCompact(_ ledger: Ledger, configure: (inout CompactionOptions) -> Void = { _ in }) throws
    -> CompactionSummary
{
    _ = try ledger.rollUp(now: testNow)
    var options = CompactionOptions()
    options.now = testNow
    configure(&options)
    return try ledger.compact(options)
}

/// What compaction must not change: every resource's state, and usage from the horizon on.
struct Invariants: Equatable {
    var statuses: [ResourceStatus?]
    var usage: [UsageRow]
    var current: CurrentUsage

    init(
        _ ledger: Ledger, resources: [ResourceID], owner: String = "org-1", from: Timestamp = horizon,
        granularity: UsageGranularity = .hour
    ) throws {
        statuses = try resources.map { try ledger.status(of: $0) }
        usage = try ledger.usage(
            .owner(owner), from: from, to: testNow, granularity: granularity, groupByResource: true
        ).rows
        current = try ledger.currentUsage(owner: owner)
        current.resources.sort { $0.resource < $1.resource }
    }
}

@Suite("Compaction rules, on hand-written timelines")
struct CompactionRuleTests {
    /// Appends `events` for app/a, compacts, and checks the invariants and what remains.
    func check(
        _ events: [UsageEvent], remaining: [String], pruned: [EventKind: [PruneRule: Int]], kept: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: events)
        let resources = Array(Set(events.map(\.resource))).sorted()
        let before = try Invariants(ledger, resources: resources)
        let summary = try rollUpAndCompact(ledger)
        #expect(summary.horizon == horizon, sourceLocation: sourceLocation)
        #expect(summary.pruned == pruned, sourceLocation: sourceLocation)
        #expect(summary.openingEventsKept == kept, sourceLocation: sourceLocation)
        let left = try resources.flatMap { try ledger.history(of: $0) }.map(\.event.id)
        #expect(left == remaining, sourceLocation: sourceLocation)
        #expect(try Invariants(ledger, resources: resources) == before, sourceLocation: sourceLocation)
        let report = try ledger.verify()
        #expect(report.isConsistent, "\(report.differences)", sourceLocation: sourceLocation)
        _ = try ledger.rebuild()
        #expect(try Invariants(ledger, resources: resources) == before, "after rebuild", sourceLocation: sourceLocation)
    }

    @Test("running since long ago with many scalings: the first and the latest beginning before H survive")
    func manyScalings() throws {
        try check(
            [
                event(.started, "b1", at: "2026-09-01T00:00:00Z", footprint: ["instances": 1]),
                event(.started, "b2", at: "2026-09-05T00:00:00Z", footprint: ["instances": 2]),
                event(.started, "b3", at: "2026-09-10T00:00:00Z", footprint: ["instances": 3]),
                event(.started, "b4", at: "2026-09-20T00:00:00Z", footprint: ["instances": 4]),
                event(.started, "b5", at: "2026-10-01T00:00:00Z", footprint: ["instances": 5]),
                event(.started, "b6", at: "2026-11-01T00:00:00Z", footprint: ["instances": 6]),
            ], remaining: ["b1", "b5", "b6"], pruned: [.started: [.supersededBaseline: 3]], kept: 2)
    }

    @Test("stopped long ago: the whole run is pruned")
    func stoppedLongAgo() throws {
        try check(
            [
                event(.started, "s1", at: "2026-09-01T00:00:00Z", footprint: ["instances": 1]),
                event(.started, "s2", at: "2026-09-05T00:00:00Z", footprint: ["instances": 2]),
                event(.stopped, "s3", at: "2026-09-10T00:00:00Z"),
            ], remaining: [], pruned: [.started: [.runOver: 2], .stopped: [.beforeHorizon: 1]], kept: 0)
    }

    @Test("stopped after H: the run's beginnings before H stay")
    func stoppedAfterHorizon() throws {
        try check(
            [
                event(.started, "a1", at: "2026-09-01T00:00:00Z", footprint: ["instances": 1]),
                event(.started, "a2", at: "2026-09-05T00:00:00Z", footprint: ["instances": 2]),
                event(.stopped, "a3", at: "2026-11-01T00:00:00Z"),
            ], remaining: ["a1", "a2", "a3"], pruned: [:], kept: 2)
    }

    @Test("restarted after a stop before H: the old run goes, the new run keeps its first and latest beginning")
    func restartedAfterStop() throws {
        try check(
            [
                event(.started, "r1", at: "2026-09-01T00:00:00Z", footprint: ["instances": 1]),
                event(.stopped, "r2", at: "2026-09-10T00:00:00Z"),
                event(.started, "r3", at: "2026-09-15T00:00:00Z", footprint: ["instances": 2]),
                event(.started, "r4", at: "2026-10-01T00:00:00Z", footprint: ["instances": 3]),
                event(.started, "r5", at: "2026-10-10T00:00:00Z", footprint: ["instances": 4]),
            ], remaining: ["r3", "r5"],
            pruned: [.started: [.runOver: 1, .supersededBaseline: 1], .stopped: [.beforeHorizon: 1]], kept: 2)
    }

    @Test("a was_running baseline followed by scalings keeps the baseline as the run's start")
    func baselineThenScalings() throws {
        try check(
            [
                event(.wasRunning, "w1", at: "2026-09-01T00:00:00Z", footprint: ["memory_mb": 256]),
                event(.started, "w2", at: "2026-09-05T00:00:00Z", footprint: ["memory_mb": 512]),
                event(.started, "w3", at: "2026-09-10T00:00:00Z", footprint: ["memory_mb": 1024]),
            ], remaining: ["w1", "w3"], pruned: [.started: [.supersededBaseline: 1]], kept: 2)
    }

    @Test("an unmatched stop is pruned and still counted")
    func unmatchedStop() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: [
            event(.stopped, "u1", at: "2026-09-01T00:00:00Z"),
            event(.started, "u2", at: "2026-09-05T00:00:00Z", footprint: ["instances": 1]),
        ])
        let summary = try rollUpAndCompact(ledger)
        #expect(summary.pruned == [.stopped: [.beforeHorizon: 1]])
        #expect(try ledger.history(of: ResourceID(type: "app", id: "a")).map(\.event.id) == ["u2"])
        #expect(try ledger.statistics().unmatchedStops == 1)
        #expect(try ledger.verify().isConsistent)
    }

    @Test("only adjustments: old ones are pruned, their sums live on in snapshots and in reconcile")
    func onlyAdjustments() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        let job = ResourceID(type: "job", id: "j")
        _ = try ledger.append(contentsOf: [
            event(.adjustment, "j1", "job/j", at: "2026-09-01T10:00:00Z", deltas: ["network_bytes": 100]),
            event(.adjustment, "j2", "job/j", at: "2026-09-15T10:00:00Z", deltas: ["network_bytes": 50]),
            event(.adjustment, "j3", "job/j", at: "2026-11-01T10:00:00Z", deltas: ["network_bytes": 7]),
        ])
        let september = try total(ledger, .resource(job), "2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z")
        let summary = try rollUpAndCompact(ledger)
        #expect(summary.pruned == [.adjustment: [.beforeHorizon: 2]])
        #expect(try ledger.history(of: job).map(\.event.id) == ["j3"])
        // Whole hours before the horizon come from the sealed snapshots.
        #expect(try total(ledger, .resource(job), "2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z") == september)
        #expect(
            try ledger.reconcile(
                resource: job, owner: "org-1", reportedTotals: ["network_bytes": 157],
                at: ts("2026-11-20T00:00:00Z"), key: "after") == .nothingToDo)
        #expect(try ledger.verify().isConsistent)
    }
}

@Suite("Compaction safety")
struct CompactionSafetyTests {
    static let longRunner: [UsageEvent] = [
        event(.started, "x1", at: "2026-09-01T00:00:00Z", footprint: ["instances": 1]),
        event(.started, "x2", at: "2026-09-05T00:00:00Z", footprint: ["instances": 2]),
        event(.started, "x3", at: "2026-09-09T00:00:00Z", footprint: ["instances": 3]),
        event(.adjustment, "x4", at: "2026-09-09T00:30:00Z", deltas: ["bytes": 9]),
        event(.stopped, "t1", "task/t", at: "2026-09-03T00:00:00Z"),
    ]

    @Test("compaction fails closed until the hourly snapshots cover the horizon")
    func failsClosed() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: Self.longRunner)
        var options = CompactionOptions()
        options.now = testNow
        #expect { try ledger.compact(options) } throws: { error in
            guard case .compactionRefused(let reason)? = error as? LedgerError else { return false }
            return reason.contains("run 'usage-ledger rollup' first")
        }
        #expect(try ledger.events(after: 0, limit: 100).events.count == 5)
        #expect(try ledger.statistics().horizon == nil)
    }

    @Test("a dry run counts what would be pruned and changes nothing")
    func dryRun() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: Self.longRunner)
        _ = try ledger.rollUp(now: testNow)
        let before = try ledger.statistics()
        let dry = try rollUpAndCompact(ledger) { $0.dryRun = true }
        #expect(dry.dryRun)
        let after = try ledger.statistics()
        #expect(after.databases == before.databases)
        #expect(after.horizon == nil)
        let real = try rollUpAndCompact(ledger)
        #expect(real.pruned == dry.pruned)
        #expect(
            real.pruned == [
                .started: [.supersededBaseline: 1], .adjustment: [.beforeHorizon: 1], .stopped: [.beforeHorizon: 1],
            ])
    }

    @Test("after compaction an event older than the horizon is too_late, naming the horizon")
    func tooLate() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: Self.longRunner)
        try rollUpAndCompact(ledger)
        let error = LedgerError.tooLate(occurredAt: ts("2026-10-01T00:00:00Z"), horizon: horizon)
        #expect(throws: error) { try ledger.append(event(.stopped, "late", at: "2026-10-01T00:00:00Z")) }
        #expect(
            error.message
                == "occurred_at: 2026-10-01T00:00:00Z is before the compaction horizon 2026-10-24T12:00:00Z; the log "
                + "before it can no longer be refolded"
        )
        // A retry of a kept opening event is still a duplicate, not too_late.
        #expect(try ledger.append(Self.longRunner[0]).isDuplicate)
        try ledger.append(event(.stopped, "ok", at: "2026-11-02T00:00:00Z"))
    }

    @Test("a feed cursor older than the pruned range gets a distinct signal and what remains")
    func feedSignal() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: Self.longRunner)
        try ledger.append(event(.stopped, "new", at: "2026-11-02T00:00:00Z"))
        try rollUpAndCompact(ledger)
        let page = try ledger.events(after: 0, limit: 100)
        #expect(page.pruned == PrunedEvents(throughSeq: 5, horizon: horizon))
        #expect(page.events.map(\.event.id) == ["x1", "x3", "new"])
        #expect(try ledger.events(after: 5, limit: 100).pruned == nil)
    }

    @Test("a consumer behind the pruned range rebuilds once from currentUsage and goes on from its asOfSeq")
    func feedRebuildOnce() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        for n in 0..<12 {
            try ledger.append(
                event(.started, "s\(n)", "app/r\(n)", at: "2026-10-01T00:00:00Z", footprint: ["instances": 1]))
            if n % 3 == 0 { try ledger.append(event(.stopped, "e\(n)", "app/r\(n)", at: "2026-10-02T00:00:00Z")) }
            if n % 4 == 0 {
                try ledger.append(
                    event(.started, "f\(n)", "app/r\(n)", at: "2026-10-05T00:00:00Z", footprint: ["instances": 2]))
            }
        }
        try rollUpAndCompact(ledger)
        /// The consumer's view: footprints of what runs, rebuilt from currentUsage or moved by events.
        var view: [ResourceID: Meters] = [:]
        var cursor: UInt64 = 0, rebuilds = 0
        while true {
            let page = try ledger.events(after: cursor, limit: 2)
            if page.pruned != nil {
                let current = try ledger.currentUsage()
                view = Dictionary(uniqueKeysWithValues: current.resources.map { ($0.resource, $0.footprint) })
                rebuilds += 1
                cursor = current.asOfSeq
                if rebuilds == 1 {
                    try ledger.append(
                        event(.stopped, "after", "app/r1", at: "2026-11-10T00:00:00Z"))
                }
                continue
            }
            for recorded in page.events {
                switch recorded.event.kind {
                case .started, .wasRunning: view[recorded.event.resource] = recorded.event.footprint
                case .stopped: view[recorded.event.resource] = nil
                case .adjustment: break
                }
            }
            cursor = page.nextCursor
            if page.events.isEmpty { break }
        }
        #expect(rebuilds == 1)
        let expected = try ledger.currentUsage().resources
        #expect(view == Dictionary(uniqueKeysWithValues: expected.map { ($0.resource, $0.footprint) }))
        #expect(view[ResourceID(type: "app", id: "r1")] == nil && view.count == 8)
        // The loop the docs showed before: rebuilding on every page that says "pruned" rebuilt more than once.
        var naiveCursor: UInt64 = 0, naiveRebuilds = 0
        while true {
            let page = try ledger.events(after: naiveCursor, limit: 2)
            if page.pruned != nil { naiveRebuilds += 1 }
            if page.events.isEmpty { break }
            naiveCursor = page.nextCursor
        }
        #expect(naiveRebuilds > 1)
    }

    @Test("snapshot retention drops old hours as a range and queries before it say so")
    func snapshotRetention() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: Self.longRunner)
        let september = try total(ledger, .owner("org-1"), "2026-09-10T00:00:00Z", "2026-09-20T00:00:00Z")
        let summary = try rollUpAndCompact(ledger) { $0.snapshotRetentionDays = 70 }  // retained from 2026-09-15T12:00Z
        #expect(
            summary.snapshotsDropped
                == (ts("2026-09-15T12:00:00Z").microseconds - ts("2026-09-01T00:00:00Z").microseconds) / 3_600_000_000)
        #expect {
            try ledger.usage(.owner("org-1"), from: ts("2026-09-10T00:00:00Z"), to: ts("2026-09-20T00:00:00Z"))
        } throws: {
            ($0 as? LedgerError)?.code == "outside_retention"
        }
        // Whole hours after retention and before the horizon are still answered from sealed snapshots.
        let kept = try total(ledger, .owner("org-1"), "2026-09-16T00:00:00Z", "2026-09-20T00:00:00Z")
        #expect(kept.runningMicroseconds == µs(4 * 86_400))
        #expect(september.runningMicroseconds == µs(10 * 86_400))
        // A partial hour before the horizon can no longer be folded from the log.
        #expect {
            try ledger.usage(.owner("org-1"), from: ts("2026-09-16T00:30:00Z"), to: ts("2026-09-20T00:00:00Z"))
        } throws: {
            ($0 as? LedgerError)?.code == "outside_retention"
        }
        #expect { try rollUpAndCompact(ledger) { $0.snapshotRetentionDays = 10 } } throws: {
            ($0 as? LedgerError)?.code == "invalid_argument"
        }
    }

    @Test("seed-baseline appends baselines once and stops resources missing from the list")
    func seedBaseline() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        try ledger.append(event(.started, "gone", "app/gone", at: "2026-11-20T00:00:00Z", footprint: ["instances": 1]))
        try ledger.append(event(.started, "kept", "app/kept", at: "2026-11-20T00:00:00Z", footprint: ["instances": 1]))
        let running = [
            RunningResource(resource: ResourceID(type: "app", id: "kept"), owner: "org-1", footprint: ["instances": 1]),
            RunningResource(
                resource: ResourceID(type: "app", id: "new"), owner: "org-1", footprint: ["instances": 4],
                attributes: ["zone": "b"]),
        ]
        let first = try ledger.seedBaselines(running, stopMissing: true)
        #expect(first.baselinesAppended == 1 && first.alreadyRunning == 1 && first.stoppedMissing == 1)
        let new = try #require(try ledger.status(of: ResourceID(type: "app", id: "new")))
        #expect(new.running && new.runStartedAt == testNow && new.attributes == ["zone": "b"])
        let gone = try #require(try ledger.history(of: ResourceID(type: "app", id: "gone")).last)
        #expect(gone.event.kind == .stopped && gone.event.reason == "absent_at_reseed")
        let rerun = try ledger.seedBaselines(running, stopMissing: true)
        #expect(rerun == SeedSummary(baselinesAppended: 0, alreadyRunning: 2, stoppedMissing: 0, duplicates: 0))
        #expect(try ledger.verify().isConsistent)
    }

    @Test("correctFootprints restates differing footprints once; usage follows the inventory from then on")
    func correctFootprints() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        for (name, instances) in [("a", 1), ("b", 2), ("c", 3)] {
            let footprint: Meters = ["instances": Int64(instances)]
            try ledger.append(event(.started, name, "app/\(name)", at: "2026-11-20T00:00:00Z", footprint: footprint))
        }
        func listed(_ name: String, _ footprint: Meters) -> RunningResource {
            RunningResource(resource: ResourceID(type: "app", id: name), owner: "org-1", footprint: footprint)
        }
        let inventory = [
            listed("a", ["instances": 1]), listed("b", ["instances": 5]),
            listed("c", ["instances": 3, "memory_mb": 0]),
            listed("d", ["instances": 1]),
        ]
        let plain = try ledger.seedBaselines(inventory, stopMissing: false, at: ts("2026-11-21T00:00:00Z"))
        #expect(plain == SeedSummary(baselinesAppended: 1, alreadyRunning: 3))
        let at = ts("2026-11-22T00:00:00Z")
        let corrected = try ledger.seedBaselines(inventory, stopMissing: false, correctFootprints: true, at: at)
        #expect(corrected == SeedSummary(alreadyRunning: 4, footprintsCorrected: 2))
        let b = try #require(try ledger.status(of: ResourceID(type: "app", id: "b")))
        #expect(
            b.footprint == ["instances": 5] && b.footprintSince == at && b.runStartedAt == ts("2026-11-20T00:00:00Z"))
        for instant in [at, ts("2026-11-23T00:00:00Z")] {
            let rerun = try ledger.seedBaselines(inventory, stopMissing: false, correctFootprints: true, at: instant)
            #expect(rerun == SeedSummary(alreadyRunning: 4))
        }
        let usage = try ledger.usage(
            .resource(ResourceID(type: "app", id: "b")), from: ts("2026-11-20T00:00:00Z"),
            to: ts("2026-11-24T00:00:00Z"), granularity: .total)
        let day = Int128(86_400_000_000)
        #expect(usage.rows.first?.amounts.meterMicroseconds["instances"] == 2 * 2 * day + 5 * 2 * day)
        #expect(try ledger.verify().isConsistent)
    }
}

@Suite("Compaction invariants, property-based")
struct CompactionPropertyTests {
    @Test("over random histories and horizons, compaction keeps current state and usage from the horizon on")
    func invariantsHold() async {
        await propertyCheck(count: 30, input: Gen.uint64(in: 0...UInt64.max)) { seed in
            do {
                var random = RandomEvents(seed: seed)
                let dir = try TemporaryDirectory()
                let ledger = try openLedger(dir)
                var events: [UsageEvent] = []
                let start = ts("2026-09-01T00:00:00Z").microseconds
                let span = testNow.microseconds - 3_600_000_000 - start
                for r in 0..<4 {
                    var instants = Set<Int64>()
                    while instants.count < 12 { instants.insert(start + Int64(random.next(UInt64(span)))) }
                    let resource = "app/p\(r)"
                    for (n, at) in instants.sorted().enumerated() {
                        let when = Timestamp(microseconds: at).rfc3339
                        switch random.next(10) {
                        case 0...4:
                            events.append(
                                event(
                                    random.next(3) == 0 ? .wasRunning : .started, "p\(r)-\(n)", resource, at: when,
                                    footprint: ["instances": Int64(random.next(5))]))
                        case 5...7: events.append(event(.stopped, "p\(r)-\(n)", resource, at: when))
                        default:
                            events.append(
                                event(
                                    .adjustment, "p\(r)-\(n)", resource, at: when,
                                    deltas: ["bytes": Int64(random.next(100)) - 50]))
                        }
                    }
                }
                _ = try ledger.append(contentsOf: events)
                let cutoff = 1 + Int(random.next(80))
                let h = Timestamp(microseconds: testNow.microseconds - Int64(cutoff) * 86_400_000_000).hourFloor
                let resources = Array(Set(events.map(\.resource))).sorted()
                _ = try ledger.rollUp(now: testNow)
                let before = try Invariants(ledger, resources: resources, from: h)
                let adjustmentTotals = try resources.map {
                    try ledger.usage(.resource($0), from: h, to: testNow).rows.first?.amounts.adjustments
                }
                var options = CompactionOptions()
                options.now = testNow
                options.cutoffAgeDays = cutoff
                options.batchSize = 1 + Int(random.next(5))
                let summary = try ledger.compact(options)
                #expect(summary.horizon == h, "seed \(seed)")
                #expect(
                    try Invariants(ledger, resources: resources, from: h) == before, "seed \(seed), cutoff \(cutoff)")
                #expect(
                    try resources.map {
                        try ledger.usage(.resource($0), from: h, to: testNow).rows.first?.amounts.adjustments
                    } == adjustmentTotals)
                let report = try ledger.verify()
                #expect(report.isConsistent, "seed \(seed): \(report.differences)")
                // Rebuilding from what remains of the log gives the same answers.
                _ = try ledger.rebuild()
                #expect(try Invariants(ledger, resources: resources, from: h) == before, "seed \(seed) after rebuild")
                // No event before the horizon remains unless it opens a run still going at the horizon.
                for resource in resources {
                    let old = try ledger.history(of: resource).filter { $0.event.occurredAt < h }
                    #expect(old.count <= 2 && old.allSatisfy { $0.event.kind.isBeginning }, "seed \(seed) \(resource)")
                }
            } catch {
                Issue.record("seed \(seed): \(error)")
            }
        }
    }
}

@Suite("Compaction with real processes")
struct CompactionProcessTests {
    /// A ledger of `count` resources, each with a finished old run and a long-running one with scalings.
    static func fleet(_ db: String, count: Int) throws {
        var options = LedgerOptions()
        options.clock = .fixed(testNow)
        options.durability = .noSync
        let ledger = try Ledger(path: db, options: options)
        var events: [UsageEvent] = []
        for n in 0..<count {
            let r = "app/k\(n)"
            events += [
                event(.started, "k\(n)-1", r, at: "2026-10-10T00:00:00Z", footprint: ["instances": 1]),
                event(.stopped, "k\(n)-2", r, at: "2026-10-11T00:00:00Z"),
                event(.started, "k\(n)-3", r, at: "2026-10-12T00:00:00Z", footprint: ["instances": 2]),
                event(.started, "k\(n)-4", r, at: "2026-10-13T00:00:00Z", footprint: ["instances": 3]),
                event(.started, "k\(n)-5", r, at: "2026-10-14T00:00:00Z", footprint: ["instances": 4]),
                event(.adjustment, "k\(n)-6", r, at: "2026-10-14T01:00:00Z", deltas: ["bytes": Int64(n)]),
            ]
        }
        for chunk in stride(from: 0, to: events.count, by: 5000) {
            _ = try ledger.append(contentsOf: events[chunk..<min(chunk + 5000, events.count)])
        }
        _ = try ledger.rollUp(now: testNow)
    }

    /// Many short finished runs (fully pruned, one transaction each with --batch-size 1) and, one resource in
    /// 25, a long-running one with scalings: a compaction long enough to be killed inside.
    static func churn(_ db: String, count: Int) throws -> Int {
        var options = LedgerOptions()
        options.clock = .fixed(testNow)
        options.durability = .noSync
        let ledger = try Ledger(path: db, options: options)
        var events: [UsageEvent] = []
        var kept = 0
        for n in 0..<count {
            let r = "app/k\(n)"
            if n % 25 == 0 {
                events += [
                    event(.started, "k\(n)-1", r, at: "2026-10-12T00:00:00Z", footprint: ["instances": 2]),
                    event(.started, "k\(n)-2", r, at: "2026-10-13T00:00:00Z", footprint: ["instances": 3]),
                    event(.started, "k\(n)-3", r, at: "2026-10-14T00:00:00Z", footprint: ["instances": 4]),
                ]
                kept += 2
            } else {
                events += [
                    event(.started, "k\(n)-1", r, at: "2026-10-20T00:00:00Z", footprint: ["instances": 1]),
                    event(.started, "k\(n)-2", r, at: "2026-10-20T01:00:00Z", footprint: ["instances": 2]),
                    event(.adjustment, "k\(n)-3", r, at: "2026-10-20T01:30:00Z", deltas: ["bytes": Int64(n)]),
                    event(.stopped, "k\(n)-4", r, at: "2026-10-20T02:00:00Z"),
                ]
            }
        }
        for chunk in stride(from: 0, to: events.count, by: 5000) {
            _ = try ledger.append(contentsOf: events[chunk..<min(chunk + 5000, events.count)])
        }
        _ = try ledger.rollUp(now: testNow)
        return kept
    }

    /// Starts a `usage-ledger append` process that starts `count` tasks of `owner`, in batches of 10.
    static func startAppending(_ count: Int, owner: String, to db: String, in dir: TemporaryDirectory) throws -> (
        Process, Pipe, Pipe
    ) {
        let lines = (0..<count).map { n in
            #"{"id":"\#(owner)-live-\#(n)","kind":"started","resource":{"type":"task","id":"live-\#(n)","#
                + #""owner":"\#(owner)"},"occurred_at":"2026-11-20T10:00:00Z","footprint":{"memory_mb":64}}"#
        }.joined(separator: "\n")
        let file = try dir.file("\(owner)-live.ndjson", lines)
        return try startCLI(["append", file, "--db", db, "--batch-size", "10", "--now", "2026-11-24T12:00:00Z"])
    }

    @Test("a compaction killed with SIGKILL at random points leaves a valid ledger, and a rerun finishes it")
    func killedAndRerun() throws {
        let rounds = ProcessInfo.processInfo.environment["USAGE_LEDGER_KILL_ROUNDS"].flatMap(Int.init) ?? 3
        var random = RandomEvents(seed: 7)
        var interruptedMidway = 0
        for round in 0..<rounds {
            let dir = try TemporaryDirectory()
            let db = dir.child("ledger")
            let count = 1500
            let kept = try Self.churn(db, count: count)
            let total = try Ledger(path: db).statistics().databases["events"]?.entries ?? 0
            let resources = (0..<count).map { ResourceID(type: "app", id: "k\($0)") }
            let reference = try Invariants(try Ledger(path: db), resources: resources, granularity: .total)
            let observer = try Ledger(path: db)
            let (process, out, err) = try startCLI([
                "compact", "--db", db, "--batch-size", "1", "--now", "2026-11-24T12:00:00Z",
            ])
            // Kill once the compaction has recorded its horizon (its first transaction), at a random point after.
            let deadline = Date().addingTimeInterval(10)
            while try observer.statistics().horizon == nil, process.isRunning, Date() < deadline { usleep(1000) }
            usleep(useconds_t(random.next(30_000)))
            kill(process.processIdentifier, SIGKILL)
            _ = finish(process, out, err)
            let ledger = observer
            let left = try ledger.statistics().databases["events"]?.entries ?? 0
            if left > kept && left < total { interruptedMidway += 1 }
            let interrupted = try ledger.verify()
            #expect(interrupted.isConsistent, "round \(round): \(interrupted.differences)")
            #expect(
                try Invariants(ledger, resources: resources, granularity: .total) == reference,
                "round \(round) after the kill")
            let rerun = try runCLI(["compact", "--db", db, "--now", "2026-11-24T12:00:00Z"])
            #expect(rerun.status == 0, "round \(round): \(rerun.stderr)")
            #expect(
                try Invariants(ledger, resources: resources, granularity: .total) == reference,
                "round \(round) after the rerun")
            #expect(try ledger.verify().isConsistent)
            #expect(try ledger.statistics().databases["events"]?.entries == kept)
        }
        // The kills must really land inside compactions for this test to mean anything.
        #expect(interruptedMidway >= 1, "no kill landed inside a compaction")
        print("kill test: \(interruptedMidway) of \(rounds) kills landed mid-compaction")
    }

    @Test("a second compaction exits at once naming the holder")
    func twoCompactions() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        try Self.fleet(db, count: 10)
        let lock = try CompactionLock(ledgerPath: db, clock: .system)
        let second = try runCLI(["compact", "--db", db, "--now", "2026-11-24T12:00:00Z"])
        #expect(second.status == 2)
        #expect(
            second.stderr.contains("compaction_running: another compaction is running (pid \(getpid()) since"),
            "\(second.stderr)")
        lock.release()
        #expect(try runCLI(["compact", "--db", db, "--now", "2026-11-24T12:00:00Z"]).status == 0)
    }

    @Test("compaction while another process appends: nothing is lost, projections verify")
    func compactionWhileAppending() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        try Self.fleet(db, count: 100)
        let appender = try Self.startAppending(3000, owner: "org-2", to: db, in: dir)
        let compaction = try runCLI(["compact", "--db", db, "--batch-size", "5", "--now", "2026-11-24T12:00:00Z"])
        let appended = finish(appender.0, appender.1, appender.2)
        #expect(compaction.status == 0, "\(compaction.stderr)")
        #expect(appended.status == 0, "\(appended.stderr)")
        let ledger = try Ledger(path: db)
        #expect(try ledger.currentUsage(owner: "org-2").runningCount == 3000)
        #expect(try ledger.verify().isConsistent)
    }

    @Test("a backup taken while another process appends is a consistent ledger")
    func backupWhileAppending() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        try Self.fleet(db, count: 50)
        let appender = try Self.startAppending(5000, owner: "org-3", to: db, in: dir)
        usleep(50_000)
        let backup = try runCLI(["backup", "--db", db, "--to", dir.child("copy"), "--compact"])
        let appended = finish(appender.0, appender.1, appender.2)
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(appended.status == 0)
        // The copy holds some prefix of the appends, whole batches only, and its projections match its log.
        let copy = try Ledger(path: dir.child("copy"))
        let report = try copy.verify()
        #expect(report.isConsistent, "\(report.differences)")
        let live = try copy.currentUsage(owner: "org-3", listingResources: false).runningCount
        #expect(live % 10 == 0 && live <= 5000)
        #expect(try copy.events(after: 0, limit: 100_000).events.count == 50 * 6 + live)
    }

    @Test("CLI: dry run, compact, events after pruning (exit 4), too_late, purge-and-reseed needs --yes")
    func commands() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        try Self.fleet(db, count: 3)
        let now = ["--now", "2026-11-24T12:00:00Z"]
        let dry = try runCLI(["compact", "--db", db, "--dry-run"] + now)
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(
            dry.stdout.contains(
                #""dry_run":true,"horizon":"2026-10-24T12:00:00Z","events_examined":18,"resources_compacted":3,"#
                    + #""pruned":12,"pruned_by_kind":{"started":{"run_over":3,"superseded_baseline":3},"#
                    + #""stopped":{"before_horizon":3},"adjustment":{"before_horizon":3}},"opening_events_kept":6"#
            ), "\(dry.stdout)")
        let real = try runCLI(["compact", "--db", db] + now)
        #expect(real.stdout.contains(#""dry_run":false"#) && real.stdout.contains(#""pruned":12"#))
        let events = try runCLI(["events", "--db", db, "--after", "0"])
        #expect(events.status == 4)
        #expect(events.stdout.split(separator: "\n").count == 6)
        #expect(events.stderr.contains("events_pruned: compaction pruned events up to seq"))
        let late = try runCLI(
            ["append", "-", "--db", db] + now,
            stdin:
                #"{"id":"old","kind":"stopped","resource":{"type":"app","id":"k0","owner":"org-1"},"#
                + #""occurred_at":"2026-10-01T00:00:00Z"}"#
        )
        #expect(late.status == 3)
        #expect(
            late.stderr.contains(
                "too_late: occurred_at: 2026-10-01T00:00:00Z is before the compaction horizon 2026-10-24T12:00:00Z"))

        let running = try dir.file(
            "running.ndjson",
            #"{"resource":{"type":"app","id":"fresh","owner":"org-9"},"footprint":{"instances":1}}"# + "\n")
        let refused = try runCLI(["purge-and-reseed", "--db", db, "--running", running] + now)
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("refusing without --yes. It would delete 6 events, 3 resources"))
        #expect(try Ledger(path: db).statistics().databases["events"]?.entries == 6)
        let purged = try runCLI(["purge-and-reseed", "--db", db, "--running", running, "--yes"] + now)
        #expect(purged.status == 0, "\(purged.stderr)")
        let ledger = try Ledger(path: db)
        #expect(try ledger.currentUsage().runningCount == 1)
        #expect(try ledger.events(after: 0, limit: 10).events.map(\.seq) == [19])
        #expect(try ledger.verify().isConsistent)

        let seeded = try runCLI(["seed-baseline", "--db", db, "--running", running] + now)
        #expect(
            seeded.stdout
                == #"{"baselines_appended":0,"already_running":1,"footprints_corrected":0,"stopped_missing":0,"#
                + #""duplicates":0,"rejected":0}"#
                + "\n")
    }
}

@Suite("Purge and reseed")
struct PurgeTests {
    @Test("after a purge, rollup and verify see only the reseeded resources (no index entry of a purged one is left)")
    func purgeLeavesNoStaleIndexes() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        // 50 resources with events after their checkpoint: all 50 are pending when the purge comes.
        _ = try ledger.append(contentsOf: ProjectionMaintenanceTests.fleet())
        let kept = RunningResource(
            resource: ResourceID(type: "app", id: "f7"), owner: "org-3", footprint: ["instances": 2])
        _ = try ledger.purgeAndReseed(running: [kept], at: ts("2026-11-20T00:00:00Z"))
        _ = try ledger.rollUp(now: testNow)
        #expect(try ledger.verify().isConsistent)
        #expect(try ledger.currentUsage().runningCount == 1)
        let usage = try ledger.usage(
            .owner("org-3"), from: ts("2026-11-20T00:00:00Z"), to: ts("2026-11-21T00:00:00Z"), granularity: .total)
        #expect(usage.rows.first?.amounts.runningMicroseconds == 86_400_000_000)
    }
}
