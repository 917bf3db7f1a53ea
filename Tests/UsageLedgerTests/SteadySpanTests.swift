import PropertyBased
import Testing
@testable import UsageLedger

@Suite("Format 5: steady hours as spans")
struct SteadySpanTests {
    static let from = Timestamp(microseconds: RandomTimeline.start.microseconds - 86_400_000_000)
    static let to = Timestamp(microseconds: RandomTimeline.start.microseconds + 5 * 86_400_000_000)

    /// The per-hour rows of every hour, folded from the whole log: what format 4 stored, row by row.
    static func reference(_ events: [UsageEvent]) throws -> [ResourceID: [Int64: UsageAmounts]] {
        var byResource: [ResourceID: [TimelineEntry]] = [:]
        for (seq, event) in events.enumerated() {
            byResource[event.resource, default: []].append(TimelineEntry(seq: UInt64(seq + 1), event: event))
        }
        var rows: [ResourceID: [Int64: UsageAmounts]] = [:]
        for (resource, entries) in byResource {
            let fold = try Fold.replay(entries.sorted(by: TimelineEntry.precedes), resource: resource, owner: "org-p")
            rows[resource] = try Fold.hourly(fold, from: from, until: to)
        }
        return rows
    }

    /// Every answer by hour: per resource, and the owner's sum (from owner_hourly).
    static func answers(_ ledger: Ledger, _ resources: [ResourceID]) throws -> [String: [Int64: UsageAmounts]] {
        var answers: [String: [Int64: UsageAmounts]] = [:]
        for resource in resources {
            let report = try ledger.usage(.resource(resource), from: from, to: to, granularity: .hour)
            answers[resource.description] = Dictionary(
                uniqueKeysWithValues: report.rows.map { ($0.periodStart.microseconds, $0.amounts) })
        }
        let owner = try ledger.usage(.owner("org-p"), from: from, to: to, granularity: .hour)
        answers["owner"] = Dictionary(
            uniqueKeysWithValues: owner.rows.map { ($0.periodStart.microseconds, $0.amounts) })
        return answers
    }

    /// The first hour in which two answers differ, for a short failure message.
    static func firstDifference(_ a: [Int64: UsageAmounts]?, _ b: [Int64: UsageAmounts]?) -> String {
        let a = a ?? [:], b = b ?? [:]
        guard let hour = Set(a.keys).union(b.keys).sorted().first(where: { a[$0] != b[$0] }) else { return "none" }
        return "\(Timestamp(microseconds: hour)): \(String(describing: a[hour])) vs \(String(describing: b[hour]))"
    }

    @Test("every hour answers what per-hour rows answered, rows only where events are, also after late events")
    func spansAnswerLikeRows() async {
        await propertyCheck(count: 25, input: Gen.uint64(in: 0...UInt64.max)) { seed in
            do {
                let events = RandomTimeline.events(seed: seed, resources: 4, perResource: 12)
                let resources = Array(Set(events.map(\.resource))).sorted()
                let dir = try TemporaryDirectory()
                let ledger = try openLedger(dir)
                // Random order and random rollups between: late events refold rolled-up spans.
                try RandomTimeline.appendShuffled(events, to: ledger, seed: seed ^ 0x5EAD, largestBatch: 4)
                _ = try ledger.rollUp(now: testNow)
                let want = try Self.reference(events)
                var ownerWant: [Int64: UsageAmounts] = [:]
                for rows in want.values {
                    for (hour, amounts) in rows { try ownerWant[hour, default: .init()].add(amounts) }
                }
                let got = try Self.answers(ledger, resources)
                for resource in resources {
                    let (answer, reference) = (got[resource.description], want[resource] ?? [:])
                    #expect(answer == reference, "seed \(seed) \(resource): \(Self.firstDifference(answer, reference))")
                }
                #expect(
                    got["owner"] == ownerWant, "seed \(seed) owner: \(Self.firstDifference(got["owner"], ownerWant))")
                // What is stored follows the events: rows only in hours with one, a span between them.
                let stats = try ledger.statistics()
                #expect((stats.databases["hourly"]?.entries ?? 0) <= events.count, "seed \(seed)")
                #expect((stats.databases["steady"]?.entries ?? 0) <= events.count + resources.count, "seed \(seed)")
                let report = try ledger.verify()
                #expect(report.isConsistent, "seed \(seed): \(report.differences)")
            } catch {
                Issue.record("seed \(seed): \(error)")
            }
        }
    }

    @Test("compaction, retention and rebuild keep every whole-hour answer; sealed spans survive them")
    func spansSurviveCompaction() async {
        await propertyCheck(count: 15, input: Gen.uint64(in: 0...UInt64.max)) { seed in
            do {
                let events = RandomTimeline.events(seed: seed, resources: 4, perResource: 12)
                let resources = Array(Set(events.map(\.resource))).sorted()
                let dir = try TemporaryDirectory()
                let ledger = try openLedger(dir)
                _ = try ledger.append(contentsOf: events)
                let before = try Self.answers(ledger, resources)
                // Horizon 2026-11-03T12:00Z, inside the events; retention from 2026-10-31T12:00Z.
                _ = try rollUpAndCompact(ledger) {
                    $0.cutoffAgeDays = 21
                    $0.snapshotRetentionDays = 24
                }
                var retained = before
                for key in retained.keys {
                    retained[key] = retained[key]?.filter { $0.key >= ts("2026-10-31T12:00:00Z").microseconds }
                }
                let query = { () throws -> [String: [Int64: UsageAmounts]] in
                    var answers: [String: [Int64: UsageAmounts]] = [:]
                    let from = ts("2026-10-31T12:00:00Z")
                    for resource in resources {
                        let report = try ledger.usage(.resource(resource), from: from, to: Self.to, granularity: .hour)
                        answers[resource.description] = Dictionary(
                            uniqueKeysWithValues: report.rows.map { ($0.periodStart.microseconds, $0.amounts) })
                    }
                    let owner = try ledger.usage(.owner("org-p"), from: from, to: Self.to, granularity: .hour)
                    answers["owner"] = Dictionary(
                        uniqueKeysWithValues: owner.rows.map { ($0.periodStart.microseconds, $0.amounts) })
                    return answers
                }
                let compacted = try query()
                #expect(
                    compacted == retained,
                    "seed \(seed) after compaction: \(Self.firstDifference(compacted["owner"], retained["owner"]))")
                #expect(try ledger.verify().isConsistent, "seed \(seed)")
                _ = try ledger.rebuild()
                let rebuilt = try query()
                #expect(
                    rebuilt == retained,
                    "seed \(seed) after rebuild: \(Self.firstDifference(rebuilt["owner"], retained["owner"]))")
                let report = try ledger.verify()
                #expect(report.isConsistent, "seed \(seed): \(report.differences)")
            } catch {
                Issue.record("seed \(seed): \(error)")
            }
        }
    }

    @Test("a month-long steady run is one span, and its hours are an hour of its footprint each")
    func monthLongRunIsOneSpan() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        try ledger.append(
            event(.started, "m1", "app/m", at: "2026-10-01T00:30:00Z", footprint: ["instances": 2, "gpus": 0]))
        let summary = try ledger.rollUp(now: ts("2026-10-31T00:10:00Z"))
        let stats = try ledger.statistics()
        #expect(stats.databases["hourly"]?.entries == 1)  // the hour it started in
        #expect(stats.databases["steady"]?.entries == 1)
        #expect(summary.resourceHours == 30 * 24)
        #expect(summary.rowsWritten == 1 && summary.spansBegun == 1)
        // Another rollup continues the same span instead of starting one.
        _ = try ledger.rollUp(now: ts("2026-11-02T00:10:00Z"))
        #expect(try ledger.statistics().databases["steady"]?.entries == 1)
        let day = try ledger.usage(
            .resource(ResourceID(type: "app", id: "m")), from: ts("2026-10-15T00:00:00Z"),
            to: ts("2026-10-16T00:00:00Z"), granularity: .total)
        let amounts = day.rows[0].amounts
        #expect(amounts.runningMicroseconds == 86_400_000_000)
        #expect(amounts.meterMicroseconds["instances"] == Int128(2 * 86_400_000_000))
        #expect(amounts.meterMicroseconds["gpus"] == Int128(0))  // a meter of 0 stays present
        #expect(amounts.meterMicroseconds.count == 2)
        #expect(amounts.adjustments.isEmpty)
    }

    @Test("verify catches a tampered span (and the owner sums that no longer match it); rebuild repairs it")
    func tamperedSpan() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        try ledger.append(event(.started, "t1", "app/t", at: "2026-10-01T00:30:00Z", footprint: ["instances": 2]))
        _ = try ledger.rollUp(now: ts("2026-10-03T00:10:00Z"))
        #expect(try ledger.verify().isConsistent)
        let schema = ledger.schema
        let key = SteadySpanKey(
            owner: "org-1", resource: ResourceID(type: "app", id: "t"), start: ts("2026-10-01T01:00:00Z").microseconds)
        _ = try ledger.write { txn in try txn.put(schema.steady, key, (47, ["instances": 3])) }
        let report = try ledger.verify()
        #expect(report.differences.contains { $0.hasPrefix("app/t steady hours: stored") }, "\(report.differences)")
        #expect(report.differences.contains { $0.hasPrefix("owner_hourly org-1 hour") }, "\(report.differences)")
        _ = try ledger.rebuild()
        #expect(try ledger.verify().isConsistent)
    }

    @Test("a span claiming hours the snapshots never held: verify reports it; rebuild drops it, or refuses if sealed")
    func spanOutsideTheSnapshots() throws {
        // A whole hour years before anything the ledger holds, claiming a decade: what damage can look like.
        let key = SteadySpanKey(
            owner: "org-1", resource: ResourceID(type: "app", id: "o"), start: ts("2016-01-01T00:00:00Z").microseconds)
        for sealed in [false, true] {
            let dir = try TemporaryDirectory()
            let ledger = try openLedger(dir)
            try ledger.append(event(.started, "o1", "app/o", at: "2026-10-01T00:30:00Z", footprint: ["instances": 1]))
            if sealed {
                _ = try rollUpAndCompact(ledger) { $0.cutoffAgeDays = 40 }  // horizon 2026-10-15T12:00Z
            } else {
                _ = try ledger.rollUp(now: ts("2026-10-02T00:10:00Z"))
            }
            let schema = ledger.schema
            _ = try ledger.write { txn in try txn.put(schema.steady, key, (87_600, ["instances": 1])) }
            let report = try ledger.verify()
            #expect(
                report.differences.contains { $0.contains("spans reach outside the hours") }, "\(report.differences)")
            if sealed {
                // Before the horizon the span cannot be derived again, and sweeping its decade is no repair.
                #expect {
                    _ = try ledger.rebuild()
                } throws: {
                    ($0 as? LedgerError)?.code == "corrupt"
                }
            } else {
                _ = try ledger.rebuild()  // every span is rebuilt from the log
                #expect(try ledger.verify().isConsistent)
            }
        }
    }
}
