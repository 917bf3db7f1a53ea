import LMDBStorage
import LedgerCore
#if canImport(Glibc)
import Glibc
#endif

/// How to compact.
public struct CompactionOptions: Sendable {
    /// Events older than this many days (the horizon, floored to a whole hour) are candidates for pruning.
    public var cutoffAgeDays = 31
    /// Hourly snapshots older than this many days are dropped; at least `cutoffAgeDays`.
    public var snapshotRetentionDays = 400
    /// At most about this many events are pruned per write transaction, so appenders are never held up long.
    public var batchSize = 2_000
    /// Count what would be pruned and change nothing.
    public var dryRun = false
    /// The instant the ages are measured from (default: the ledger's clock).
    public var now: Timestamp?

    /// The defaults: 31 days of log, 400 days of snapshots, 2,000 events per transaction.
    public init() {}
}

/// Why an event was pruned.
public enum PruneRule: String, Sendable, CaseIterable {
    /// A `stopped` or `adjustment` before the horizon: its usage lives on in the hourly snapshots.
    case beforeHorizon = "before_horizon"
    /// A beginning followed by a `stopped` before the horizon: that run is over.
    case runOver = "run_over"
    /// A beginning between the first beginning of its run and the latest one before the horizon.
    case supersededBaseline = "superseded_baseline"
}

/// What a compaction did (or, in a dry run, would do).
public struct CompactionSummary: Sendable, Equatable {
    /// Events before this instant were considered.
    public var horizon: Timestamp
    /// Whether nothing was changed.
    public var dryRun: Bool
    /// Events whose timeline was read.
    public var eventsExamined = 0
    /// Resources that had events pruned.
    public var resourcesCompacted = 0
    /// Pruned events by kind, then by rule.
    public var pruned: [EventKind: [PruneRule: Int]] = [:]
    /// Beginning events before the horizon kept because their resource still runs.
    public var openingEventsKept = 0
    /// Hourly snapshot rows dropped by snapshot retention.
    public var snapshotsDropped = 0
    /// Snapshots before this instant are dropped.
    public var snapshotsRetainedFrom: Timestamp
    /// Wall-clock time taken, in microseconds.
    public var durationMicroseconds: Int64 = 0

    /// All pruned events.
    public var prunedCount: Int { pruned.values.reduce(0) { $0 + $1.values.reduce(0, +) } }
}

/// Progress of a running compaction.
public struct CompactionProgress: Sendable {
    /// Resources looked at so far.
    public var resourcesVisited: Int
    /// Of how many.
    public var resourcesTotal: Int
    /// Events pruned so far.
    public var eventsPruned: Int
}

extension Ledger {
    /// Prunes old events while keeping the opening events of resources that still run (see
    /// docs/compaction.md), then drops old hourly snapshots.
    ///
    /// - Throws: `compaction_running` when another process compacts, `compaction_refused` when the hourly
    ///   snapshots do not yet cover the horizon (roll up first).
    public func compact(_ options: CompactionOptions = CompactionOptions(),
                        progress: (CompactionProgress) -> Void = { _ in }) throws(LedgerError) -> CompactionSummary {
        do {
            let summary = try compact(options, progress: progress, stopAfterBatches: nil)
            guard !summary.dryRun else { return summary }
            metrics.pruned.increment(by: summary.prunedCount)
            metrics.recordMap(environment.statistics())
            logger.info("compacted to horizon \(summary.horizon)", metadata: [
                "examined": "\(summary.eventsExamined)", "pruned": "\(summary.prunedCount)",
                "opening_events_kept": "\(summary.openingEventsKept)", "snapshots_dropped": "\(summary.snapshotsDropped)",
                "milliseconds": "\(summary.durationMicroseconds / 1000)",
            ])
            return summary
        } catch {
            logger.error("compaction stopped", metadata: ["code": "\(error.code)", "error": "\(error)"])
            throw error
        }
    }

    func compact(_ options: CompactionOptions, progress: (CompactionProgress) -> Void,
                 stopAfterBatches: Int?) throws(LedgerError) -> CompactionSummary {
        guard options.cutoffAgeDays >= 0, options.snapshotRetentionDays >= options.cutoffAgeDays else {
            throw .invalidArgument(reason: "snapshot retention (\(options.snapshotRetentionDays) days) must be at least the cutoff age (\(options.cutoffAgeDays) days)")
        }
        guard options.batchSize > 0 else { throw .invalidArgument(reason: "batch size must be positive") }
        let started = LedgerClock.system.now()
        let now = options.now ?? self.options.clock.now()
        let day: Int64 = 86_400_000_000
        var horizon = Timestamp(microseconds: now.microseconds - Int64(options.cutoffAgeDays) * day).hourFloor
        let retainedFrom = Timestamp(microseconds: now.microseconds - Int64(options.snapshotRetentionDays) * day).hourFloor
        let lock = options.dryRun ? nil : try CompactionLock(ledgerPath: path, clock: self.options.clock)
        defer { lock?.release() }

        let meta = databases.meta
        if !options.dryRun {
            // Record the horizon before pruning anything: from now on no event before it can be appended.
            horizon = try write { txn -> Timestamp in
                let watermark = try ProjectionMeta.timestamp(txn, meta, ProjectionMeta.watermark)
                guard let watermark, watermark >= horizon else {
                    throw LedgerError.compactionRefused(reason: "hourly snapshots cover hours before \(watermark?.rfc3339 ?? "none (never rolled up)") only; compaction to \(horizon) needs them up to the horizon: run 'usage-ledger rollup' first")
                }
                let previous = try ProjectionMeta.timestamp(txn, meta, ProjectionMeta.horizon) ?? .earliest
                let effective = max(previous, horizon)
                try ProjectionMeta.put(txn, meta, ProjectionMeta.horizon, effective)
                return effective
            }
        }
        var summary = CompactionSummary(horizon: horizon, dryRun: options.dryRun, snapshotsRetainedFrom: retainedFrom)
        let resources = try read { txn in try allResources(in: txn) }
        var next = 0
        var batches = 0
        // A batch ends after about batchSize pruned events, or after 2,000 resources looked at.
        func batchContinues(_ index: Int, _ start: Int, _ pruned: Int) -> Bool {
            index < resources.count && pruned < options.batchSize && index - start < 2_000
        }
        while next < resources.count {
            if let stopAfterBatches, batches >= stopAfterBatches { return summary }
            let start = next
            if options.dryRun {
                next = try read { txn -> Int in
                    var index = start, pruned = 0
                    while batchContinues(index, start, pruned) {
                        let (number, resource, owner) = resources[index]
                        index += 1
                        guard let plan = try planCompaction(number, resource: resource, owner: owner, horizon: horizon, in: txn) else { continue }
                        plan.record(into: &summary)
                        pruned += plan.prune.count
                    }
                    return index
                }
            } else {
                next = try write { txn -> Int in
                    var index = start, pruned = 0
                    while batchContinues(index, start, pruned) {
                        let (number, resource, owner) = resources[index]
                        index += 1
                        guard let plan = try planCompaction(number, resource: resource, owner: owner, horizon: horizon, in: txn) else { continue }
                        plan.record(into: &summary)
                        try apply(plan, horizon: horizon, in: txn)
                        pruned += plan.prune.count
                    }
                    return index
                }
            }
            batches += 1
            if !options.dryRun { yieldToWaitingWriters() }
            progress(CompactionProgress(resourcesVisited: next, resourcesTotal: resources.count, eventsPruned: summary.prunedCount))
        }
        summary.snapshotsDropped = try dropSnapshots(before: retainedFrom, dryRun: options.dryRun)
        summary.durationMicroseconds = LedgerClock.system.now().microseconds - started.microseconds
        return summary
    }

    /// Decides which of one resource's events before the horizon the rules prune. Nil when the resource
    /// has no event before the horizon.
    func planCompaction(_ number: UInt64, resource: ResourceID, owner: String, horizon: Timestamp,
                        in txn: borrowing some ReadableTransaction & ~Copyable) throws -> CompactionPlan? {
        // Most resources have nothing before the horizon: look at the first timeline key only.
        let prefix = StorageFormat.timelinePrefix(resource: number)
        let cursor = try txn.cursor(databases.timeline)
        guard let first = try cursor.seek(atLeast: prefix), prefix.withUnsafeBytes({ first.key.hasPrefix($0) }), first.key.count == 24 else {
            return nil
        }
        let earliest = Int64(bitPattern: UInt64(bigEndian: first.key.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) ^ (1 << 63))
        guard earliest < horizon.microseconds else { return nil }
        let entries = try timeline(resourceNumber: number, in: txn)
        let old = entries.prefix { $0.occurredAt < horizon }
        let lastStop = old.lastIndex { $0.event.kind == .stopped }
        let openBeginnings = old.indices.filter { index in old[index].event.kind.isBeginning && (lastStop.map { index > $0 } ?? true) }
        var prune: [(TimelineEntry, PruneRule)] = []
        for index in old.indices {
            let entry = old[index]
            switch entry.event.kind {
            case .stopped, .adjustment:
                prune.append((entry, .beforeHorizon))
            case .started, .wasRunning:
                if let lastStop, index < lastStop {
                    prune.append((entry, .runOver))
                } else if index != openBeginnings.first && index != openBeginnings.last {
                    prune.append((entry, .supersededBaseline))
                }
            }
        }
        return CompactionPlan(number: number, resource: resource, owner: owner, entries: entries,
                              base: try compactionBase(resourceNumber: number, in: txn), prune: prune,
                              openingEventsKept: Set([openBeginnings.first, openBeginnings.last].compactMap { $0 }).count)
    }

    /// Prunes a planned resource's events, all of them in this transaction, and keeps what they carried in
    /// the resource's base so that replaying what remains gives exactly the state the whole timeline gives.
    private func apply(_ plan: CompactionPlan, horizon: Timestamp, in txn: borrowing WriteTransaction) throws {
        guard !plan.prune.isEmpty else { return }
        // Fail closed per resource: its rows must cover every hour before the horizon before its events go.
        let stateKey = BigEndianKey(plan.number)
        if let stored = try txn.get(databases.resourceState, stateKey) {
            var state = try ProjectionFormat.decodeState(stored)
            if state.accruedUntil < horizon {
                var ownerRows = OwnerRowChanges()
                _ = try materialize(resourceNumber: plan.number, state: &state, until: horizon, ownerRows: &ownerRows, in: txn)
                try ownerRows.apply(to: txn, database: databases.ownerHourly)
                try txn.put(databases.resourceState, stateKey, ProjectionFormat.encode(state))
            }
        }
        let prunedSeqs = Set(plan.prune.map(\.0.seq))
        let remaining = plan.entries.filter { !prunedSeqs.contains($0.seq) }
        let full = try Fold.replay(plan.entries, resource: plan.resource, owner: plan.owner, base: plan.base)
        let rest = try Fold.replay(remaining, resource: plan.resource, owner: plan.owner)
        var newBase = CompactionBase()
        newBase.lastOccurredAt = max(plan.base.lastOccurredAt, plan.prune.map(\.0.occurredAt).max() ?? .earliest)
        newBase.unmatchedStops = full.state.unmatchedStops - rest.state.unmatchedStops
        for (name, value) in full.state.adjustmentTotals { newBase.adjustmentTotals[name] = value - (rest.state.adjustmentTotals[name] ?? 0) }
        let check = try Fold.replay(remaining, resource: plan.resource, owner: plan.owner, base: newBase).state
        guard check == full.state else {
            throw LedgerError.corrupt(reason: "compacting \(plan.resource) would change its current state; nothing was pruned")
        }
        var highest: UInt64 = 0
        for (entry, _) in plan.prune {
            try txn.delete(databases.events, BigEndianKey(entry.seq))
            try txn.delete(databases.timeline, StorageFormat.timelineKey(resource: plan.number, occurredAt: entry.occurredAt, seq: entry.seq))
            if let mapped = try txn.get(databases.eventIDs, entry.event.id),
               try StorageFormat.decodeNumber(mapped, what: "an event_ids entry") == entry.seq {
                try txn.delete(databases.eventIDs, entry.event.id)
            }
            highest = max(highest, entry.seq)
        }
        try txn.put(databases.compactionBase, BigEndianKey(plan.number), ProjectionFormat.encode(newBase))
        let meta = databases.meta
        let through = try txn.get(meta, ProjectionMeta.prunedThroughSeq).map { try StorageFormat.decodeNumber($0, what: "pruned_through_seq") } ?? 0
        if highest > through { try txn.put(meta, ProjectionMeta.prunedThroughSeq, BigEndianKey(highest).bytes) }
    }

    /// Drops hourly rows of hours before `before` as one key range; returns how many (or would be).
    private func dropSnapshots(before: Timestamp, dryRun: Bool) throws(LedgerError) -> Int {
        func isOld(_ key: UnsafeRawBufferPointer) -> Bool { ProjectionFormat.hour(ofHourlyKey: key).map { $0 < before.microseconds } ?? false }
        if dryRun {
            return try read { txn in
                var count = 0
                let cursor = try txn.cursor(databases.hourly)
                var entry = try cursor.first()
                while let current = entry, isOld(current.key) {
                    count += 1
                    entry = try cursor.next()
                }
                return count
            }
        }
        var total = 0
        while true {
            let (dropped, ownersDropped) = try write { txn -> (Int, Int) in
                var count = 0
                let cursor = try txn.cursor(databases.hourly)
                while count < 10_000, let current = try cursor.first(), isOld(current.key) {
                    try cursor.deleteCurrent()
                    count += 1
                }
                // Owner-hour sums go with their hours' rows (there are fewer of them than rows).
                var owners = 0
                let ownerCursor = try txn.cursor(databases.ownerHourly)
                while owners < 10_000, let current = try ownerCursor.first(), isOld(current.key) {
                    try ownerCursor.deleteCurrent()
                    owners += 1
                }
                let previous = try ProjectionMeta.timestamp(txn, databases.meta, ProjectionMeta.snapshotsRetainedFrom) ?? .earliest
                if before > previous { try ProjectionMeta.put(txn, databases.meta, ProjectionMeta.snapshotsRetainedFrom, before) }
                return (count, owners)
            }
            total += dropped
            if dropped < 10_000 && ownersDropped < 10_000 { return total }
        }
    }
}

/// What compaction will prune of one resource.
struct CompactionPlan {
    var number: UInt64
    var resource: ResourceID
    var owner: String
    var entries: [TimelineEntry]
    var base: CompactionBase
    var prune: [(TimelineEntry, PruneRule)]
    var openingEventsKept: Int

    func record(into summary: inout CompactionSummary) {
        summary.eventsExamined += entries.count
        summary.openingEventsKept += openingEventsKept
        guard !prune.isEmpty else { return }
        summary.resourcesCompacted += 1
        for (entry, rule) in prune { summary.pruned[entry.event.kind, default: [:]][rule, default: 0] += 1 }
    }
}
