import Foundation
import PropertyBased
import Testing
import CLMDB
@testable import LMDBStorage
@testable import UsageLedger

/// An event for resource `resource` (TYPE/ID) of org-1.
func event(
    _ kind: EventKind, _ id: String, _ resource: String = "app/a", owner: String = "org-1", at: String,
    footprint: Meters? = nil, deltas: Meters? = nil
) -> UsageEvent {
    UsageEvent(
        id: id, kind: kind, resource: ResourceID(parsing: resource) ?? ResourceID(type: "x", id: "x"), owner: owner,
        occurredAt: ts(at), footprint: kind.isBeginning ? (footprint ?? Meters()) : nil, deltas: deltas)
}

/// `seconds` of usage as exact microsecond units.
func µs(_ seconds: Int128) -> Int128 { seconds * 1_000_000 }

func total(_ ledger: Ledger, _ subject: UsageSubject, _ from: String, _ to: String) throws -> UsageAmounts {
    let report = try ledger.usage(subject, from: ts(from), to: ts(to))
    return report.rows.first?.amounts ?? UsageAmounts()
}

@Suite("Projections: worked examples from docs/semantics.md")
struct WorkedExampleTests {
    @Test("scaling up mid-hour changes the footprint from that instant; the run goes on")
    func scaleUpMidHour() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: [
            event(.started, "s1", at: "2026-11-01T10:00:00Z", footprint: ["instances": 1, "memory_mb": 512]),
            event(.started, "s2", at: "2026-11-01T10:30:00Z", footprint: ["instances": 2, "memory_mb": 1024]),
        ])
        let status = try #require(try ledger.status(of: ResourceID(type: "app", id: "a")))
        #expect(status.running)
        #expect(status.runStartedAt == ts("2026-11-01T10:00:00Z"))
        #expect(status.footprintSince == ts("2026-11-01T10:30:00Z"))
        #expect(status.footprint == ["instances": 2, "memory_mb": 1024])
        #expect(try ledger.currentUsage(owner: "org-1").totals == ["instances": 2, "memory_mb": 1024])

        try ledger.append(event(.stopped, "s3", at: "2026-11-01T11:00:00Z"))
        let usage = try total(
            ledger, .resource(ResourceID(type: "app", id: "a")), "2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z")
        #expect(usage.runningMicroseconds == µs(3600))
        #expect(
            usage.meterMicroseconds == [
                "instances": µs(1 * 1800 + 2 * 1800), "memory_mb": µs(512 * 1800 + 1024 * 1800),
            ])
        #expect(ExactDecimal.seconds(fromMicroseconds: usage.meterMicroseconds["memory_mb"] ?? 0) == "2764800")
        let lastSeq = try ledger.statistics().nextSeq - 1
        #expect(
            try ledger.currentUsage(owner: "org-1")
                == CurrentUsage(resources: [], runningCount: 0, totals: [:], asOfSeq: lastSeq))
    }

    @Test("a run spanning days splits exactly by day and by hour")
    func runSpanningDays() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: [
            event(.started, "d1", at: "2026-11-01T22:00:00Z", footprint: ["memory_mb": 100]),
            event(.stopped, "d2", at: "2026-11-03T02:00:00Z"),
        ])
        let subject = UsageSubject.resource(ResourceID(type: "app", id: "a"))
        let days = try ledger.usage(
            subject, from: ts("2026-11-01T00:00:00Z"), to: ts("2026-11-04T00:00:00Z"), granularity: .day)
        #expect(
            days.rows.map(\.periodStart) == [
                ts("2026-11-01T00:00:00Z"), ts("2026-11-02T00:00:00Z"), ts("2026-11-03T00:00:00Z"),
            ])
        #expect(days.rows.map(\.amounts.runningMicroseconds) == [µs(7200), µs(86_400), µs(7200)])
        let hours = try ledger.usage(
            subject, from: ts("2026-11-01T00:00:00Z"), to: ts("2026-11-04T00:00:00Z"), granularity: .hour)
        #expect(hours.rows.count == 28)
        #expect(
            hours.rows.allSatisfy {
                $0.amounts.runningMicroseconds == µs(3600) && $0.amounts.meterMicroseconds["memory_mb"] == µs(360_000)
            })
    }

    @Test("a stop and a restart inside one hour count only the running time")
    func stopAndRestartInOneHour() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: [
            event(.started, "r1", at: "2026-11-01T10:00:00Z", footprint: ["instances": 1]),
            event(.stopped, "r2", at: "2026-11-01T10:15:00Z"),
            event(.started, "r3", at: "2026-11-01T10:45:00Z", footprint: ["instances": 1]),
            event(.stopped, "r4", at: "2026-11-01T11:00:00Z"),
        ])
        let usage = try total(ledger, .owner("org-1"), "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")
        #expect(usage.runningMicroseconds == µs(1800))
        #expect(usage.meterMicroseconds == ["instances": µs(1800)])
    }

    @Test("a was_running baseline begins a run; a later beginning only changes the footprint")
    func wasRunningBaseline() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: [
            event(.wasRunning, "w1", "service_instance/db", at: "2026-11-01T10:00:00Z", footprint: ["memory_mb": 256]),
            event(.started, "w2", "service_instance/db", at: "2026-11-01T10:20:00Z", footprint: ["memory_mb": 512]),
        ])
        let status = try #require(try ledger.status(of: ResourceID(type: "service_instance", id: "db")))
        #expect(status.runStartedAt == ts("2026-11-01T10:00:00Z"))
        try ledger.append(event(.stopped, "w3", "service_instance/db", at: "2026-11-01T10:40:00Z"))
        let usage = try total(ledger, .owner("org-1"), "2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z")
        #expect(usage.runningMicroseconds == µs(2400))
        #expect(usage.meterMicroseconds == ["memory_mb": µs(256 * 1200 + 512 * 1200)])
    }

    @Test("an unmatched stop is stored, has no effect on usage, and is counted and reported")
    func unmatchedStop() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        let result = try ledger.append(contentsOf: [
            event(.stopped, "u1", at: "2026-11-01T09:00:00Z"),
            event(.started, "u2", at: "2026-11-01T10:00:00Z", footprint: ["instances": 1]),
            event(.stopped, "u3", at: "2026-11-01T11:00:00Z"),
        ])
        #expect(result.unmatchedStops == [0])
        #expect(try ledger.statistics().unmatchedStops == 1)
        #expect(try ledger.history(of: ResourceID(type: "app", id: "a")).count == 3)
        #expect(
            try total(ledger, .owner("org-1"), "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z").runningMicroseconds
                == µs(3600))
    }

    @Test("an unmatched stop is provisional: a late start that occurred before it re-matches it")
    func unmatchedStopRematched() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        let stop = try ledger.append(contentsOf: [event(.stopped, "s", at: "2026-11-01T11:00:00Z")])
        #expect(stop.unmatchedStops == [0])
        let late = try ledger.append(contentsOf: [
            event(.started, "late", at: "2026-11-01T10:00:00Z", footprint: ["instances": 1])
        ])
        #expect(late.unmatchedStops.isEmpty)
        #expect(try ledger.status(of: ResourceID(type: "app", id: "a"))?.running == false)
        #expect(
            try total(ledger, .owner("org-1"), "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z").runningMicroseconds
                == µs(3600))
        #expect(try ledger.statistics().unmatchedStops == 0)
    }

    @Test("negative deltas subtract: storage can shrink")
    func negativeDeltas() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: [
            event(
                .adjustment, "n1", "job/j", at: "2026-11-01T10:10:00Z",
                deltas: ["storage_bytes": 1000, "network_bytes": 5]),
            event(.adjustment, "n2", "job/j", at: "2026-11-01T10:50:00Z", deltas: ["storage_bytes": -300]),
        ])
        let usage = try total(
            ledger, .resource(ResourceID(type: "job", id: "j")), "2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z")
        #expect(usage.adjustments == ["storage_bytes": 700, "network_bytes": 5])
        #expect(usage.runningMicroseconds == 0)
        let before = try total(
            ledger, .resource(ResourceID(type: "job", id: "j")), "2026-11-01T10:00:00Z", "2026-11-01T10:30:00Z")
        #expect(before.adjustments == ["storage_bytes": 1000, "network_bytes": 5])
    }

    @Test("a meter at zero is present as zero; an absent meter stays absent")
    func absentVersusZero() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: [
            event(.started, "z1", "app/zero", at: "2026-11-01T10:00:00Z", footprint: ["gpu": 0]),
            event(.started, "z2", "app/none", at: "2026-11-01T10:00:00Z", footprint: [:]),
        ])
        let report = try ledger.usage(
            .owner("org-1"), from: ts("2026-11-01T10:00:00Z"), to: ts("2026-11-01T11:00:00Z"), groupByResource: true)
        let byResource = Dictionary(
            uniqueKeysWithValues: report.rows.compactMap { row in row.resource.map { ($0.id, row.amounts) } })
        #expect(byResource["zero"]?.meterMicroseconds == ["gpu": 0])
        #expect(byResource["none"]?.meterMicroseconds == [:])
        #expect(byResource["none"]?.runningMicroseconds == µs(3600))
        #expect(try ledger.currentUsage(owner: "org-1").totals == ["gpu": 0])
    }

    @Test("usage is capped at the ledger's clock: no usage in the future")
    func cappedAtNow() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)  // clock: 2026-11-24T12:00:00Z
        try ledger.append(event(.started, "c1", at: "2026-11-24T10:00:00Z", footprint: ["instances": 3]))
        let report = try ledger.usage(.owner("org-1"), from: ts("2026-11-24T00:00:00Z"), to: ts("2027-01-01T00:00:00Z"))
        #expect(report.to == testNow)
        #expect(report.rows.first?.amounts.runningMicroseconds == µs(7200))
        #expect(report.rows.first?.amounts.meterMicroseconds == ["instances": µs(21_600)])
    }

    @Test("current usage keeps owners and types apart, even with look-alike names")
    func currentByOwnerAndType() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: [
            event(.started, "o1", "app/x", owner: "org-1", at: "2026-11-01T10:00:00Z", footprint: ["memory_mb": 100]),
            event(.started, "o2", "task/x", owner: "org-1", at: "2026-11-01T10:00:00Z", footprint: ["memory_mb": 10]),
            event(.started, "o3", "app/y", owner: "org-10", at: "2026-11-01T10:00:00Z", footprint: ["memory_mb": 1000]),
            event(.started, "o4", "app.v2/z", owner: "org-1", at: "2026-11-01T10:00:00Z", footprint: ["memory_mb": 1]),
        ])
        let org1 = try ledger.currentUsage(owner: "org-1")
        #expect(org1.runningCount == 3)
        #expect(org1.totals == ["memory_mb": 111])
        #expect(Set(org1.resources.map(\.resource.description)) == ["app/x", "task/x", "app.v2/z"])
        let apps = try ledger.currentUsage(owner: "org-1", type: "app")
        #expect(apps.resources.map(\.resource.description) == ["app/x"])
        #expect(apps.totals == ["memory_mb": 100])
        #expect(try ledger.currentUsage(type: "app").totals == ["memory_mb": 1100])
        #expect(try ledger.currentUsage().runningCount == 4)
        let totalsOnly = try ledger.currentUsage(owner: "org-1", listingResources: false)
        let lastSeq = try ledger.statistics().nextSeq - 1
        #expect(
            totalsOnly == CurrentUsage(resources: [], runningCount: 3, totals: ["memory_mb": 111], asOfSeq: lastSeq))
        let usage = try total(ledger, .owner("org-1"), "2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z")
        #expect(usage.meterMicroseconds == ["memory_mb": µs(111 * 3600)])
    }
}

/// Random timelines for property tests: a few resources, distinct instants per resource, all kinds.
struct RandomTimeline {
    static let start = Timestamp(microseconds: 1_793_491_200_000_000)  // 2026-11-01T00:00:00Z

    static func events(seed: UInt64, resources: Int = 3, perResource: Int = 10) -> [UsageEvent] {
        var random = RandomEvents(seed: seed)
        var events: [UsageEvent] = []
        for r in 0..<resources {
            // Distinct instants within about three days, at microsecond resolution.
            var instants = Set<Int64>()
            while instants.count < perResource { instants.insert(Int64(random.next(3 * 86_400_000_000))) }
            for (n, offset) in instants.sorted().enumerated() {
                let at = Timestamp(microseconds: start.microseconds + offset)
                let resource = ResourceID(type: r % 2 == 0 ? "app" : "task", id: "r\(r)")
                let id = "p-\(r)-\(n)"
                switch random.next(10) {
                case 0...4:
                    events.append(
                        UsageEvent(
                            id: id, kind: random.next(4) == 0 ? .wasRunning : .started, resource: resource,
                            owner: "org-p",
                            occurredAt: at,
                            footprint: ["instances": Int64(random.next(4)), "memory_mb": Int64(random.next(4096))]))
                case 5...7:
                    events.append(
                        UsageEvent(id: id, kind: .stopped, resource: resource, owner: "org-p", occurredAt: at))
                default:
                    events.append(
                        UsageEvent(
                            id: id, kind: .adjustment, resource: resource, owner: "org-p", occurredAt: at,
                            deltas: ["network_bytes": Int64(random.next(2000)) - 1000]))
                }
            }
        }
        return events
    }

    /// Appends `events` in a random order, in batches of 1 to `largestBatch`, rolling up to a random instant
    /// after about a third of the batches: late events then refold rows and spans already rolled up.
    static func appendShuffled(_ events: [UsageEvent], to ledger: Ledger, seed: UInt64, largestBatch: UInt64) throws {
        var random = RandomEvents(seed: seed)
        var remaining = events
        while !remaining.isEmpty {
            let batch = (0..<min(remaining.count, 1 + Int(random.next(largestBatch)))).map { _ in
                remaining.remove(at: Int(random.next(UInt64(remaining.count))))
            }
            _ = try ledger.append(contentsOf: batch)
            if random.next(3) == 0 {
                let at = start.microseconds + Int64(random.next(4 * 86_400_000_000))
                _ = try ledger.rollUp(now: Timestamp(microseconds: at))
            }
        }
    }
}

@Suite("Projections: properties")
struct ProjectionPropertyTests {
    /// Everything a user can observe of the projections, for comparison.
    struct Observation: Equatable {
        var hourly: [UsageRow]
        var statuses: [ResourceStatus?]
        var current: CurrentUsage
        var unmatchedStops: UInt64
    }

    static func observe(_ ledger: Ledger, resources: [ResourceID]) throws -> Observation {
        let from = RandomTimeline.start,
            to = Timestamp(microseconds: RandomTimeline.start.microseconds + 4 * 86_400_000_000)
        let hourly = try ledger.usage(.owner("org-p"), from: from, to: to, granularity: .hour, groupByResource: true)
        var current = try ledger.currentUsage(owner: "org-p")
        current.resources.sort { $0.resource < $1.resource }
        return Observation(
            hourly: hourly.rows, statuses: try resources.map { try ledger.status(of: $0) }, current: current,
            unmatchedStops: try ledger.statistics().unmatchedStops)
    }

    @Test(
        "a timeline appended in any order, with rollups between, gives the projections of in order, also rebuilt"
    )
    func outOfOrderEqualsInOrder() async {
        await propertyCheck(count: 25, input: Gen.uint64(in: 0...UInt64.max)) { seed in
            let events = RandomTimeline.events(seed: seed)
            let resources = Array(Set(events.map(\.resource))).sorted()
            do {
                let dirA = try TemporaryDirectory(), dirB = try TemporaryDirectory()
                let inOrder = try openLedger(dirA)
                _ = try inOrder.append(contentsOf: events.sorted { $0.occurredAt < $1.occurredAt })
                let shuffled = try openLedger(dirB)
                try RandomTimeline.appendShuffled(events, to: shuffled, seed: seed ^ 0xA5A5, largestBatch: 3)
                #expect(
                    try Self.observe(shuffled, resources: resources) == Self.observe(inOrder, resources: resources),
                    "seed \(seed)")
                let verifyA = try inOrder.verify(), verifyB = try shuffled.verify()
                #expect(verifyA.isConsistent, "\(verifyA.differences)")
                #expect(verifyB.isConsistent, "seed \(seed): \(verifyB.differences)")
                // Rebuilding from the log alone keeps every answer and leaves verify consistent.
                _ = try shuffled.rebuild()
                let rebuilt = try shuffled.verify()
                #expect(rebuilt.isConsistent, "seed \(seed) after rebuild: \(rebuilt.differences)")
                #expect(
                    try Self.observe(shuffled, resources: resources) == Self.observe(inOrder, resources: resources),
                    "seed \(seed)")
            } catch {
                Issue.record("seed \(seed): \(error)")
            }
        }
    }

    @Test("usage over [from, to) equals the sum of [from, split) and [split, to) for any split")
    func usageIsAdditive() async {
        await propertyCheck(count: 40, input: Gen.uint64(in: 0...UInt64.max)) { seed in
            do {
                let dir = try TemporaryDirectory()
                let ledger = try openLedger(dir)
                _ = try ledger.append(contentsOf: RandomTimeline.events(seed: seed, resources: 2, perResource: 8))
                var random = RandomEvents(seed: seed ^ 0x5A5A)
                if random.next(2) == 0 {
                    _ = try ledger.rollUp(
                        now: Timestamp(
                            microseconds: RandomTimeline.start.microseconds + Int64(random.next(4 * 86_400_000_000))))
                }
                var points = (0..<3).map { _ in
                    RandomTimeline.start.microseconds - 3_600_000_000 + Int64(random.next(5 * 86_400_000_000))
                }
                points.sort()
                let (from, split, to) = (
                    Timestamp(microseconds: points[0]), Timestamp(microseconds: points[1]),
                    Timestamp(microseconds: points[2])
                )
                for subject in [UsageSubject.owner("org-p"), .resource(ResourceID(type: "app", id: "r0"))] {
                    let whole = try ledger.usage(subject, from: from, to: to).rows[0].amounts
                    var parts = try ledger.usage(subject, from: from, to: split).rows[0].amounts
                    try parts.add(try ledger.usage(subject, from: split, to: to).rows[0].amounts)
                    #expect(whole.runningMicroseconds == parts.runningMicroseconds, "seed \(seed)")
                    #expect(
                        whole.meterMicroseconds.filter { $0.value != 0 }
                            == parts.meterMicroseconds.filter { $0.value != 0 }, "seed \(seed)")
                    #expect(
                        whole.adjustments.filter { $0.value != 0 } == parts.adjustments.filter { $0.value != 0 },
                        "seed \(seed)")
                    // Hourly rows add up to the total too.
                    let hourly = try ledger.usage(subject, from: from, to: to, granularity: .hour)
                    var sum = UsageAmounts()
                    for row in hourly.rows { try sum.add(row.amounts) }
                    #expect(sum.runningMicroseconds == whole.runningMicroseconds, "seed \(seed)")
                    #expect(sum.meterMicroseconds == whole.meterMicroseconds, "seed \(seed)")
                }
            } catch {
                Issue.record("seed \(seed): \(error)")
            }
        }
    }
}

@Suite("Projections: rollup, reconcile, verify, rebuild")
struct ProjectionMaintenanceTests {
    /// Every hourly row, raw.
    static func rows(_ ledger: Ledger) throws -> [[UInt8]: [UInt8]] {
        try ledger.environment.read { txn in
            var all: [[UInt8]: [UInt8]] = [:]
            let cursor = try txn.cursor(ledger.schema.hourly)
            var entry = try cursor.rawFirst()
            while let current = entry {
                all[Array(current.key)] = Array(current.value)
                entry = try cursor.rawNext()
            }
            return all
        }
    }

    static func fleet() -> [UsageEvent] {
        (0..<50).map { n in
            event(
                .started, "f\(n)", "app/f\(n)", owner: "org-\(n % 4)",
                at: "2026-11-0\(1 + n % 5)T0\(n % 10):1\(n % 6):00Z",
                footprint: ["instances": Int64(1 + n % 3)])
        }
    }

    @Test("rolling up twice gives the same rows, and an interrupted rollup finishes to the same rows")
    func rollupIdempotentAndResumable() throws {
        let dirA = try TemporaryDirectory(), dirB = try TemporaryDirectory()
        let complete = try openLedger(dirA), interrupted = try openLedger(dirB)
        _ = try complete.append(contentsOf: Self.fleet())
        _ = try interrupted.append(contentsOf: Self.fleet())
        let now = ts("2026-11-10T12:34:00Z")
        let first = try complete.rollUp(now: now, graceMicroseconds: 300_000_000, batchSize: 7, stopAfterBatches: nil)
        #expect(first.watermark == ts("2026-11-10T12:00:00Z"))
        #expect(first.resourcesRolled == 50)
        let rowsAfterFirst = try Self.rows(complete)
        let second = try complete.rollUp(now: now)
        #expect(second.resourcesRolled == 0)
        #expect(try Self.rows(complete) == rowsAfterFirst)
        #expect(try complete.watermark() == ts("2026-11-10T12:00:00Z"))

        _ = try interrupted.rollUp(now: now, graceMicroseconds: 300_000_000, batchSize: 7, stopAfterBatches: 2)
        #expect(try interrupted.watermark() == nil)
        #expect(try interrupted.verify().isConsistent)  // a half-done rollup is a valid state
        _ = try interrupted.rollUp(now: now, graceMicroseconds: 300_000_000, batchSize: 7, stopAfterBatches: nil)
        #expect(try Self.rows(interrupted) == rowsAfterFirst)
        #expect(try interrupted.verify().isConsistent)
    }

    @Test("a late event before the watermark corrects the materialized hours in the same transaction")
    func lateEventCorrectsRolledUpHours() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        try ledger.append(event(.started, "l1", at: "2026-11-01T08:00:00Z", footprint: ["instances": 2]))
        _ = try ledger.rollUp(now: ts("2026-11-01T12:10:00Z"))
        let subject = UsageSubject.resource(ResourceID(type: "app", id: "a"))
        #expect(
            try total(ledger, subject, "2026-11-01T08:00:00Z", "2026-11-01T12:00:00Z").runningMicroseconds
                == µs(4 * 3600))
        // The stop at 09:30 arrives after hours up to 12:00 were rolled up.
        try ledger.append(event(.stopped, "l2", at: "2026-11-01T09:30:00Z"))
        let corrected = try total(ledger, subject, "2026-11-01T08:00:00Z", "2026-11-01T12:00:00Z")
        #expect(corrected.runningMicroseconds == µs(5400))
        #expect(corrected.meterMicroseconds == ["instances": µs(10_800)])
        #expect(try ledger.verify().isConsistent)
        #expect(try ledger.currentUsage(owner: "org-1").runningCount == 0)
    }

    @Test("reconcile appends the deltas that reach reported totals, once per key")
    func reconcileIdempotent() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        let resource = ResourceID(type: "job", id: "j")
        try ledger.append(
            event(
                .adjustment, "base", "job/j", at: "2026-11-01T09:00:00Z", deltas: ["network_bytes": 100, "objects": 3]))
        let first = try ledger.reconcile(
            resource: resource, owner: "org-1", reportedTotals: ["network_bytes": 1000, "objects": 3],
            at: ts("2026-11-01T10:00:00Z"), key: "k1")
        guard case .appended(_, let deltas) = first else { Issue.record("expected an append, got \(first)"); return }
        #expect(deltas == ["network_bytes": 900])
        #expect(
            try ledger.reconcile(
                resource: resource, owner: "org-1", reportedTotals: ["network_bytes": 1000],
                at: ts("2026-11-01T10:00:00Z"), key: "k1") == .alreadyRecorded(seq: 2))
        let shrink = try ledger.reconcile(
            resource: resource, owner: "org-1", reportedTotals: ["network_bytes": 800],
            at: ts("2026-11-01T11:00:00Z"), key: "k2")
        #expect(shrink == .appended(seq: 3, deltas: ["network_bytes": -200]))
        #expect(
            try ledger.reconcile(
                resource: resource, owner: "org-1", reportedTotals: ["network_bytes": 800, "objects": 3],
                at: ts("2026-11-01T12:00:00Z"), key: "k3") == .nothingToDo)
        let usage = try total(ledger, .resource(resource), "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")
        #expect(usage.adjustments == ["network_bytes": 800, "objects": 3])
        #expect(throws: LedgerError.ownerMismatch(resource: resource, owner: "org-1", submitted: "org-2")) {
            try ledger.reconcile(
                resource: resource, owner: "org-2", reportedTotals: ["network_bytes": 1],
                at: ts("2026-11-01T12:00:00Z"), key: "k4")
        }
    }

    @Test("verify catches tampered projections; rebuild repairs them")
    func verifyCatchesTampering() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: Self.fleet())
        _ = try ledger.rollUp(now: ts("2026-11-06T00:00:00Z"))
        #expect(try ledger.verify().isConsistent)
        // Inflate one hourly row, as a bug or a hand edit would.
        let hourly = ledger.schema.hourly
        try ledger.environment.write { txn in
            let cursor = try txn.cursor(hourly)
            guard var entry = try cursor.first() else { return }
            entry.value.runningMicroseconds += 1
            try txn.put(hourly, entry.key, entry.value)
        }
        // Two differences: the row against the log, and its owner-hour sum against the rows.
        let report = try ledger.verify()
        #expect(report.differenceCount == 2)
        #expect(report.differences.first?.contains("stored running_seconds=") == true)
        #expect(report.differences.contains { $0.hasPrefix("owner_hourly org-") && $0.contains("the rows give") })
        // Drop a running resource from the index.
        let running = ledger.schema.running
        try ledger.environment.write { txn in
            let cursor = try txn.writeCursor(running)
            if try cursor.reading.first() != nil { try cursor.deleteCurrent() }
        }
        #expect(try ledger.verify().differenceCount == 3)
        // Add rows the log does not give: an hour of a resource that did not run then, and one of a stranger.
        try ledger.environment.write { txn in
            var amounts = UsageAmounts()
            amounts.runningMicroseconds = 5
            for (hour, resource) in [
                (ts("2026-10-01T00:00:00Z"), ResourceID(type: "app", id: "f1")),
                (ts("2026-11-02T00:00:00Z"), ResourceID(type: "app", id: "ghost")),
            ] {
                try txn.put(hourly, HourlyKey(hour: hour.microseconds, owner: "org-1", resource: resource), amounts)
            }
        }
        // Each stray row also leaves its owner-hour's sum short of it: 3 + 2 rows + 2 sums.
        let extra = try ledger.verify()
        #expect(extra.differenceCount == 7)
        #expect(extra.differences.contains { $0.hasPrefix("owner_hourly org-1 hour 2026-10-01T00:00:00Z: missing") })
        #expect(
            extra.differences.contains {
                $0.hasPrefix("app/f1 hour 2026-10-01T00:00:00Z: a row is stored that the log does not give")
            })
        #expect(extra.differences.contains { $0.hasPrefix("app/ghost hour 2026-11-02T00:00:00Z: a row is stored") })
        let rebuilt = try ledger.rebuild()
        #expect(rebuilt.resources == 50)
        #expect(try ledger.verify().isConsistent)
    }

    @Test("a format-1 ledger (log only) is upgraded at open by rebuilding its projections")
    func upgradesFormatOne() throws {
        let dir = try TemporaryDirectory()
        do {
            let ledger = try openLedger(dir)
            _ = try ledger.append(contentsOf: Self.fleet())
            let schema = ledger.schema
            try ledger.environment.write { txn in
                for table in schema.tables([.projection]) { try txn.clear(table) }
                try txn.put(Meta.formatVersion, 1, in: schema.meta)
            }
        }
        let reopened = try openLedger(dir)
        #expect(try reopened.currentUsage().runningCount == 50)
        #expect(try reopened.verify().isConsistent)
        #expect(try reopened.statistics().formatVersion == Ledger.formatVersion)
    }

    /// One steady hour's row as formats 2 to 4 stored it (record version 1: 16-byte big-endian sums).
    static func formatThreeRow(_ footprint: Meters) -> [UInt8] {
        let hour = Int128(Timestamp.microsecondsPerHour)
        var writer = ByteWriter(capacity: 64)
        writer.write(1)
        RecordFields.writeSigned128(hour, into: &writer)
        var meters: [String: Int128] = [:]
        for (name, value) in footprint { meters[name] = Int128(value) * hour }
        RecordFields.writeAmounts(meters, into: &writer)
        RecordFields.writeAmounts([:], into: &writer)
        return writer.bytes
    }

    @Test("a format-3 ledger gains owner_hourly at open, sealed hours included; retention drops both kinds of rows")
    func upgradesFormatThree() throws {
        let dir = try TemporaryDirectory()
        let from = ts("2026-11-05T00:00:00Z"), to = ts("2026-11-20T00:00:00Z")
        let before: UsageReport
        do {
            let ledger = try openLedger(dir)
            _ = try ledger.append(contentsOf: Self.fleet())
            // Horizon 2026-11-09T12:00Z seals the hours before it; retention drops those before 2026-11-04T12:00Z.
            try rollUpAndCompact(ledger) { options in
                options.cutoffAgeDays = 15
                options.snapshotRetentionDays = 20
            }
            #expect(try ledger.verify().isConsistent)
            before = try ledger.usage(.owner("org-1"), from: from, to: to, granularity: .hour)
            #expect(before.rows.count > 300)
            let schema = ledger.schema
            // Format 3 had no owner_hourly and no spans: a row, record version 1, for every resource-hour.
            try ledger.environment.write { txn in
                var spans: [(SteadySpanKey, Int64, Meters)] = []
                let cursor = try txn.cursor(schema.steady)
                var entry = try cursor.first()
                while let current = entry {
                    spans.append((current.key, current.value.hours, current.value.footprint))
                    entry = try cursor.next()
                }
                try txn.clear(schema.ownerHourly.id)
                try txn.clear(schema.steady.id)
                for (key, hours, footprint) in spans {
                    let row = Self.formatThreeRow(footprint)
                    for n in 0..<hours {
                        let hour = key.start + n * Timestamp.microsecondsPerHour
                        let rowKey = ProjectionFormat.hourlyKey(hour: hour, owner: key.owner, resource: key.resource)
                        try lendBytes(of: rowKey) { (keyBytes) throws(StorageError) in
                            try lendBytes(of: row) { (valueBytes) throws(StorageError) in
                                _ = try txn.rawPut(schema.hourly.id, keyBytes: keyBytes, valueBytes: valueBytes)
                            }
                        }
                    }
                }
                try txn.put(Meta.formatVersion, 3, in: schema.meta)
            }
            #expect(try !ledger.verify().isConsistent)  // read as format 5, the old rows and sums differ
        }
        let reopened = try openLedger(dir)
        #expect(try reopened.statistics().formatVersion == Ledger.formatVersion)
        #expect(try reopened.verify().isConsistent)
        #expect(try reopened.usage(.owner("org-1"), from: from, to: to, granularity: .hour) == before)
    }

    @Test(
        "a format-3 ledger without owner_hourly is refused read-only with the way out, upgraded when opened to write"
    )
    func readOnlyOldFormat() throws {
        let dir = try TemporaryDirectory()
        do {
            let ledger = try openLedger(dir)
            _ = try ledger.append(contentsOf: Self.fleet())
            _ = try ledger.rollUp(now: testNow)
            // What a format-3 ledger is: no owner_hourly database at all, and version 3.
            let schema = ledger.schema
            try ledger.environment.write { txn in
                try txn.dropTable(schema.ownerHourly.id)
                try txn.put(Meta.formatVersion, 3, in: schema.meta)
            }
        }
        // Another process's view: the registry keeps one environment per path, so open through the CLI.
        let refused = try runCLI(["stats", "--db", dir.child("ledger")])
        #expect(refused.status != 0)
        #expect(
            refused.stderr.contains("on-disk format 3 must be upgraded; open it once for writing"), "\(refused.stderr)")
        // Rollup opens for writing, which upgrades; then verify (read-only) finds owner_hourly consistent.
        let rolled = try runCLI(["rollup", "--db", dir.child("ledger"), "--now", "2026-11-24T12:00:00Z"])
        #expect(rolled.status == 0, "\(rolled.stderr)")
        let verified = try runCLI(["verify", "--db", dir.child("ledger"), "--format", "json"])
        #expect(verified.status == 0, "\(verified.stdout) \(verified.stderr)")
        #expect(verified.stdout.contains("\"consistent\":true"))
    }
}

@Suite("Usage query paths agree")
struct UsagePathTests {
    @Test(
        "an owner's ungrouped usage (summed from row bytes) equals the sum of its per-resource rows",
        arguments: [UInt64(3), 17, 29, 41])
    func ungroupedEqualsGrouped(seed: UInt64) throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: RandomTimeline.events(seed: seed, resources: 5, perResource: 12))
        _ = try ledger.rollUp(now: testNow)
        for granularity in [UsageGranularity.hour, .day, .total] {
            let from = ts("2026-11-01T00:20:00Z"), to = ts("2026-11-04T07:40:00Z")
            let ungrouped = try ledger.usage(.owner("org-p"), from: from, to: to, granularity: granularity)
            let grouped = try ledger.usage(
                .owner("org-p"), from: from, to: to, granularity: granularity, groupByResource: true)
            var sums: [Timestamp: UsageAmounts] = [:]
            for row in grouped.rows { try sums[row.periodStart, default: UsageAmounts()].add(row.amounts) }
            let expected = ungrouped.rows.filter { !$0.amounts.isEmpty }
            let summed = sums.filter { !$0.value.isEmpty }.sorted { $0.key < $1.key }
            #expect(expected.map(\.periodStart) == summed.map(\.key), "seed \(seed), \(granularity)")
            #expect(expected.map(\.amounts) == summed.map(\.value), "seed \(seed), \(granularity)")
            #expect(!expected.isEmpty)
        }
    }
}
