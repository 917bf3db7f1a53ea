import Foundation
import InMemoryLogging
import Logging
import Metrics
import MetricsTestKit
import Testing
import LMDBStorage
@testable import UsageLedger

/// Regression tests for the defects that the storage layer's reshape removed by construction.
@Suite("Storage layer: effects after commit, one environment with many options")
struct StorageDefectTests {
    /// 400 resources, each started and stopped 12 times in September (prunable by a 31-day cutoff), and one
    /// run left open per resource in November; owners org-0 to org-3.
    static func history() -> [UsageEvent] {
        var events: [UsageEvent] = []
        let september = ts("2026-09-01T00:00:00Z").microseconds
        let hour = Timestamp.microsecondsPerHour
        for r in 0..<400 {
            let resource = ResourceID(type: "app", id: "h\(r)"), owner = "org-\(r % 4)"
            for cycle in 0..<12 {
                let start = september + Int64(cycle * 48 + r % 24) * hour
                events.append(
                    UsageEvent(
                        id: "h\(r)-s\(cycle)", kind: .started, resource: resource,
                        owner: owner, occurredAt: Timestamp(microseconds: start),
                        footprint: ["instances": Int64(1 + r % 3), "memory_mb": 256]))
                events.append(
                    UsageEvent(
                        id: "h\(r)-t\(cycle)", kind: .stopped, resource: resource,
                        owner: owner, occurredAt: Timestamp(microseconds: start + 5 * hour)))
            }
            events.append(started("h\(r)-open", "app/h\(r)", owner: owner, at: "2026-11-20T0\(r % 10):00:00Z"))
        }
        return events
    }

    /// A compacting copy of the ledger `source` (no free pages), opened with a map of its pages in use plus
    /// `headroom` bytes: the first write that needs more new pages than that hits `MDB_MAP_FULL`, and its
    /// transaction runs again in a grown map. (LMDB never maps less than the pages in use.)
    static func tinyMapCopy(
        of source: Ledger, in dir: TemporaryDirectory, name: String, headroom: Int = 0,
        logs: InMemoryLogHandler? = nil, tag: [(String, String)] = []
    ) throws -> Ledger {
        try source.backup(to: dir.child(name), compacting: true)
        let used = try FileManager.default.attributesOfItem(atPath: dir.child(name) + "/data.mdb")[.size] as? Int ?? 0
        return try openLedger(dir, name: name) { options in
            options.initialMapSize = used + headroom
            options.metricsDimensions = tag
            if let logs { options.logger = Logger(label: "test", factory: { _ in logs }) }
        }
    }

    @Test("a compaction whose map grows mid-way reports, counts and logs exactly what it pruned")
    func compactionAcrossMapGrowth() throws {
        let dir = try TemporaryDirectory()
        let source = try openLedger(dir)
        _ = try source.append(contentsOf: Self.history())
        _ = try source.rollUp(now: testNow)
        let logs = InMemoryLogHandler()
        let tag = [("test", dir.path)]
        let metrics = testMetrics
        // Room for the first transaction (recording the horizon), not for the first batch of pruning.
        let ledger = try Self.tinyMapCopy(of: source, in: dir, name: "copy", headroom: 16 * 4096, logs: logs, tag: tag)
        let mapBefore = try ledger.statistics().environment.mapSize
        let storedBefore = try ledger.statistics().databases["events"]?.entries ?? 0
        var options = CompactionOptions()
        options.batchSize = 150
        let summary = try ledger.compact(options)
        let after = try ledger.statistics()
        #expect(after.environment.mapSize > mapBefore, "the map did not grow: the test did not exercise a rerun")
        let removed = storedBefore - (after.databases["events"]?.entries ?? 0)
        #expect(removed == 400 * 24)
        #expect(summary.prunedCount == removed)
        #expect(after.prunedEvents == UInt64(removed))
        #expect(try metrics.expectCounter("usage_ledger_compaction_pruned_total", tag).totalValue == removed)
        let logged = logs.entries.first { $0.message.description.hasPrefix("compacted to horizon") }
        #expect(logged?.metadata["pruned"]?.description == "\(removed)", "\(logs.entries)")
        #expect(try ledger.verify().isConsistent)
    }

    @Test("rollup, rebuild, seed-baseline and reconcile whose map grows report exactly what changed")
    func maintenanceAcrossMapGrowth() throws {
        let dir = try TemporaryDirectory()
        let tag = [("test", dir.path)]
        let metrics = testMetrics
        let source = try openLedger(dir)
        _ = try source.append(contentsOf: Self.history())

        let rolling = try Self.tinyMapCopy(of: source, in: dir, name: "rollup", tag: tag)
        let rollupMap = try rolling.statistics().environment.mapSize
        let rollup = try rolling.rollUp(now: testNow, batchSize: 50)
        let rolled = try rolling.statistics()
        #expect(rolled.environment.mapSize > rollupMap)
        // Every row written and every span begun is a new entry (a first rollup rewrites no row).
        #expect(
            rollup.rowsWritten + rollup.spansBegun
                == (rolled.databases["hourly"]?.entries ?? 0) + (rolled.databases["steady"]?.entries ?? 0))
        #expect(
            try metrics.expectCounter("usage_ledger_resource_hours_rolled_total", tag).totalValue
                == rollup.resourceHours)

        let rebuilding = try Self.tinyMapCopy(of: rolling, in: dir, name: "rebuild")
        let rebuildMap = try rebuilding.statistics().environment.mapSize
        let rebuilt = try rebuilding.rebuild()
        let afterRebuild = try rebuilding.statistics()
        #expect(afterRebuild.environment.mapSize > rebuildMap)
        #expect(rebuilt.hourlyRows == afterRebuild.databases["hourly"]?.entries)
        #expect(rebuilt.steadySpans == afterRebuild.databases["steady"]?.entries)
        #expect(rebuilt.resources == 400 && rebuilt.events == Self.history().count)
        #expect(try rebuilding.verify().isConsistent)

        let seeding = try Self.tinyMapCopy(of: rolling, in: dir, name: "seed")
        let seedMap = try seeding.statistics().environment.mapSize
        let inventory = (0..<2_000).map { n in
            RunningResource(
                resource: ResourceID(type: "vm", id: "seeded-\(n)"), owner: "org-9", footprint: ["instances": 1])
        }
        let seeded = try seeding.seedBaselines(inventory, stopMissing: false)
        let afterSeed = try seeding.statistics()
        #expect(afterSeed.environment.mapSize > seedMap)
        #expect(seeded.baselinesAppended == 2_000)
        #expect(afterSeed.nextSeq - rolled.nextSeq == 2_000)

        let reconciling = try Self.tinyMapCopy(of: rolling, in: dir, name: "reconcile")
        let reconcileMap = try reconciling.statistics().environment.mapSize
        let outcome = try reconciling.reconcile(
            resource: ResourceID(type: "app", id: "h1"), owner: "org-1",
            reportedTotals: ["network_bytes": 4_096], at: testNow, key: "k1")
        #expect(try reconciling.statistics().environment.mapSize > reconcileMap)
        #expect(outcome == .appended(seq: rolled.nextSeq, deltas: ["network_bytes": 4_096]))
        #expect(try reconciling.statistics().nextSeq == rolled.nextSeq + 1)
        #expect(try reconciling.verify().isConsistent)
    }

    @Test("a write started from inside a transaction's callback fails with nested_transaction, not a deadlock")
    func nestedWriteFails() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        try ledger.append(started("e1"))
        _ = try ledger.rollUp(now: testNow)
        let inner = Locked<LedgerError?>(nil)
        // A compaction's progress runs between its transactions: a write from it is allowed.
        _ = try ledger.compact(CompactionOptions()) { _ in
            do throws(LedgerError) { try ledger.append(started("e2", "app/a2")) } catch {
                inner.withLock { $0 = error }
            }
        }
        #expect(inner.withLock { $0 } == nil)
        // Inside a transaction, a write on the same thread is refused at once.
        let nested = try ledger.read { _ -> LedgerError? in
            do throws(LedgerError) { try ledger.append(started("e3", "app/a3")) } catch { return error }
            return nil
        }
        #expect(nested == .nestedTransaction)
        #expect(try ledger.event(seq: 3) == nil)
    }
}

@Suite("Storage layer: two opens of one path in one process")
struct SharedEnvironmentTests {
    @Test("read-only first, then for writing: the writer appends, the reader is refused with read_only")
    func readOnlyThenWriter() throws {
        let dir = try TemporaryDirectory()
        do { _ = try openLedger(dir) }
        let reader = try openLedger(dir) { $0.readOnly = true }
        let writer = try openLedger(dir)
        #expect(try writer.append(started("e1")).seq == 1)
        #expect(throws: LedgerError.readOnly(path: dir.child("ledger"))) { try reader.append(started("e2", "app/a2")) }
        #expect(try reader.event(seq: 1)?.event.id == "e1")
    }

    @Test("for writing first, then read-only: the read-only handle cannot append")
    func writerThenReadOnly() throws {
        let dir = try TemporaryDirectory()
        let writer = try openLedger(dir)
        let reader = try openLedger(dir) { $0.readOnly = true }
        #expect(throws: LedgerError.readOnly(path: dir.child("ledger"))) { try reader.append(started("e1")) }
        #expect(throws: LedgerError.readOnly(path: dir.child("ledger"))) { _ = try reader.rollUp(now: testNow) }
        #expect(try writer.append(started("e1")).seq == 1)
        #expect(try reader.statistics().nextSeq == 2)
    }

    @Test("each handle grows the map up to its own maximum")
    func mapLimitPerHandle() throws {
        let dir = try TemporaryDirectory()
        let roomy = try openLedger(dir) { $0.initialMapSize = 1 << 20 }
        let mapSize = try roomy.statistics().environment.mapSize
        let tight = try openLedger(dir) { $0.maximumMapSize = mapSize }
        #expect(try tight.statistics().environment.maximumMapSize == mapSize)
        // More events than a 1 MiB map holds: the tight handle is refused, and its batch writes nothing.
        let batches = (0..<10).map { batch in
            (0..<1_000).map { n in started("big-\(batch)-\(n)", "app/b\(batch)-\(n)") }
        }
        var refused: LedgerError?
        var accepted = 0
        for batch in batches {
            do { accepted += try tight.append(contentsOf: batch).appendedCount } catch {
                refused = error
                break
            }
        }
        #expect(refused == .ledgerFull(maximumBytes: mapSize), "\(String(describing: refused))")
        #expect(try tight.statistics().nextSeq == UInt64(accepted) + 1)
        // The roomy handle grows the map past it, and appends them all.
        for batch in batches { _ = try roomy.append(contentsOf: batch) }
        #expect(try roomy.statistics().environment.mapSize > mapSize)
        #expect(try roomy.statistics().nextSeq == 10_001)
        #expect(try tight.verify().isConsistent)
    }

    @Test("a second open asking for a bigger map gets it; an open from inside a transaction fails, never waits")
    func biggerInitialMap() throws {
        let dir = try TemporaryDirectory()
        let first = try openLedger(dir) { $0.initialMapSize = 1 << 20 }
        let second = try openLedger(dir) { $0.initialMapSize = 8 << 20 }
        #expect(try second.statistics().environment.mapSize == 8 << 20)
        // Resizing waits for every transaction of the process, and opening writes: inside a transaction of
        // the same ledger, an open must fail at once rather than wait for itself.
        var bigger = LedgerOptions()
        bigger.initialMapSize = 64 << 20
        let inside = try first.read { _ -> LedgerError? in
            do throws(LedgerError) { _ = try Ledger(path: dir.child("ledger"), options: bigger) } catch { return error }
            return nil
        }
        #expect(inside == .nestedTransaction)
        #expect(try first.statistics().environment.mapSize == 8 << 20)
    }

    @Test("reader slots differing from the first open's are refused with option_conflict")
    func readerSlotsConflict() throws {
        let dir = try TemporaryDirectory()
        let first = try openLedger(dir)
        #expect(throws: LedgerError.self) { try openLedger(dir) { $0.maximumReaders = 500 } }
        do {
            _ = try openLedger(dir) { $0.maximumReaders = 500 }
        } catch let error as LedgerError {
            #expect(error.code == "option_conflict")
            #expect(error.message.contains("maximumReaders"))
        }
        _ = first
    }
}

@Suite("rebuild then verify")
struct RebuildThenVerifyTests {
    @Test("resources first seen after a rollup, then a rollup to the same watermark: rebuild keeps verify consistent")
    func pendingAfterRebuild() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        let now = ts("2026-11-10T09:41:27Z")
        _ = try ledger.append(contentsOf: [started("a1", "app/a", at: "2026-11-09T10:00:00Z")])
        _ = try ledger.rollUp(now: now)
        // A resource the first rollup never saw, all of it before the watermark: pending, not rolled.
        _ = try ledger.append(contentsOf: [
            started("b1", "app/b", at: "2026-11-09T11:00:00Z"), stopped("b2", "app/b", at: "2026-11-09T12:30:00Z"),
        ])
        _ = try ledger.rollUp(now: now)
        #expect(try ledger.verify().isConsistent)
        let before = try ledger.usage(
            .owner("org-1"), from: ts("2026-11-09T00:00:00Z"), to: now, granularity: .hour,
            groupByResource: true)
        _ = try ledger.rebuild()
        let report = try ledger.verify()
        #expect(report.isConsistent, "\(report.differences)")
        #expect(
            try ledger.usage(
                .owner("org-1"), from: ts("2026-11-09T00:00:00Z"), to: now, granularity: .hour,
                groupByResource: true) == before)
    }
}

@Suite("Storage layer: transactions")
struct TransactionTests {
    struct BodyFailure: Error {}

    @Test("a body's failure and the environment's are told apart, and neither writes anything")
    func failuresToldApart() throws {
        let dir = try TemporaryDirectory()
        let environment = try Environment(path: dir.child("environment"))
        let table = try Table<BigEndianUInt64, RawBytes>("t", in: environment.openTables(["t"]))
        do {
            try environment.write { txn in
                try txn.put(table, 1, [1])
                throw BodyFailure()
            }
            Issue.record("the body's failure was not thrown")
        } catch {
            guard case .body(let failure) = error else { throw error }
            #expect(failure is BodyFailure)
        }
        var nested: TransactionError<StorageError>?
        try environment.read { (_) throws(StorageError) in
            do throws(TransactionError<StorageError>) {
                _ = try environment.write { (txn) throws(StorageError) in try txn.put(table, 2, [2]) }
            } catch {
                nested = error
            }
        }
        guard case .storage(.nestedTransaction)? = nested else {
            Issue.record("a write inside a read was not refused as nested: \(String(describing: nested))")
            return
        }
        #expect(try environment.read { (txn) throws(StorageError) in try txn.get(table, 1) } == nil)
        #expect(try environment.read { (txn) throws(StorageError) in try txn.get(table, 2) } == nil)
    }
}
