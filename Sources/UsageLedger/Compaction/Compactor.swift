import LMDBStorage
import LedgerCore
#if canImport(Glibc)
import Glibc
#endif

/// How to compact.
public struct CompactionOptions: Sendable {
    /// Events older than this many days (the horizon, floored to a whole hour) are candidates for pruning.
    public var cutoffAgeDays = CompactionOptions.defaultCutoffAgeDays
    /// Hourly snapshots older than this many days are dropped; at least `cutoffAgeDays`.
    public var snapshotRetentionDays = CompactionOptions.defaultSnapshotRetentionDays
    /// At most about this many events are pruned per write transaction, so appenders are never held up long.
    public var batchSize = CompactionOptions.defaultBatchSize
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
    /// Resource-hours of snapshots dropped by snapshot retention (rows, and steady hours of spans).
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
    public func compact(
        _ options: CompactionOptions = CompactionOptions(),
        progress: (CompactionProgress) -> Void = { _ in }
    ) throws(LedgerError) -> CompactionSummary {
        do {
            let summary = try compact(options, progress: progress, stopAfterBatches: nil)
            guard !summary.dryRun else { return summary }
            metrics.pruned.increment(by: summary.prunedCount)
            recordMapMetrics()
            logger.info(
                "compacted to horizon \(summary.horizon)",
                metadata: [
                    "examined": "\(summary.eventsExamined)", "pruned": "\(summary.prunedCount)",
                    "opening_events_kept": "\(summary.openingEventsKept)",
                    "snapshots_dropped": "\(summary.snapshotsDropped)",
                    "milliseconds": "\(summary.durationMicroseconds / 1000)",
                ])
            return summary
        } catch {
            logger.error("compaction stopped", metadata: ["code": "\(error.code)", "error": "\(error)"])
            throw error
        }
    }

    func compact(
        _ options: CompactionOptions, progress: (CompactionProgress) -> Void,
        stopAfterBatches: Int?
    ) throws(LedgerError) -> CompactionSummary {
        guard options.cutoffAgeDays >= 0, options.snapshotRetentionDays >= options.cutoffAgeDays else {
            throw .invalidArgument(
                reason:
                    "snapshot retention (\(options.snapshotRetentionDays) days) must be at least the cutoff age "
                    + "(\(options.cutoffAgeDays) days)"
            )
        }
        guard options.batchSize > 0 else { throw .invalidArgument(reason: "batch size must be positive") }
        let started = LedgerClock.system.now()
        let now = options.now ?? self.options.clock.now()
        let day: Int64 = 86_400_000_000
        var horizon = Timestamp(microseconds: now.microseconds - Int64(options.cutoffAgeDays) * day).hourFloor
        let retainedFrom = Timestamp(microseconds: now.microseconds - Int64(options.snapshotRetentionDays) * day)
            .hourFloor
        let lock = options.dryRun ? nil : try CompactionLock(ledgerPath: path, clock: self.options.clock)
        defer { lock?.release() }

        if !options.dryRun { horizon = try recordHorizon(horizon) }
        var summary = CompactionSummary(horizon: horizon, dryRun: options.dryRun, snapshotsRetainedFrom: retainedFrom)
        let resources = try read { txn in try allResources(in: txn) }
        var next = 0
        var batches = 0
        while next < resources.count {
            if let stopAfterBatches, batches >= stopAfterBatches { return summary }
            let start = next, pruneLimit = options.batchSize, cutoff = horizon
            // A batch's plans are values the transaction returns: they are counted once it has committed (a
            // write body runs again after the map grows, and counting inside it counted the rerun too).
            let batch: CompactionBatch
            if options.dryRun {
                batch = try read { txn in
                    try planBatch(resources, from: start, horizon: cutoff, pruneLimit: pruneLimit, in: txn)
                }
            } else {
                batch = try write { txn in
                    let batch = try self.planBatch(
                        resources, from: start, horizon: cutoff, pruneLimit: pruneLimit, in: txn)
                    for plan in batch.plans { try self.apply(plan, horizon: cutoff, in: txn) }
                    return batch
                }
                yieldToWaitingWriters()
            }
            for plan in batch.plans { plan.record(into: &summary) }
            next = batch.next
            batches += 1
            progress(
                CompactionProgress(
                    resourcesVisited: next, resourcesTotal: resources.count, eventsPruned: summary.prunedCount))
        }
        summary.snapshotsDropped = try dropSnapshots(before: retainedFrom, dryRun: options.dryRun)
        summary.durationMicroseconds = LedgerClock.system.now().microseconds - started.microseconds
        return summary
    }

    /// Records the horizon before pruning anything: from then on no event before it can be appended.
    /// Returns the effective horizon (it never moves back).
    private func recordHorizon(_ horizon: Timestamp) throws(LedgerError) -> Timestamp {
        let meta = schema.meta
        return try write { txn -> Timestamp in
            let watermark = try txn.get(Meta.watermark, in: meta)
            guard let watermark, watermark >= horizon else {
                throw LedgerError.compactionRefused(
                    reason:
                        "hourly snapshots cover hours before \(watermark?.rfc3339 ?? "none (never rolled up)") only; "
                        + "compaction to \(horizon) needs them up to the horizon: run 'usage-ledger rollup' first"
                )
            }
            let previous = try txn.get(Meta.horizon, in: meta) ?? .earliest
            let effective = max(previous, horizon)
            try txn.put(Meta.horizon, effective, in: meta)
            return effective
        }
    }

    /// The plans of one batch: resources from `start` on until about `pruneLimit` events are to be pruned,
    /// or 2,000 resources were looked at.
    private func planBatch(
        _ resources: [(UInt64, ResourceID, String)], from start: Int, horizon: Timestamp,
        pruneLimit: Int, in txn: borrowing some ReadableTransaction & ~Copyable
    ) throws -> CompactionBatch {
        var batch = CompactionBatch(next: start, plans: [])
        var pruned = 0
        while batch.next < resources.count, pruned < pruneLimit, batch.next - start < 2_000 {
            let (number, resource, owner) = resources[batch.next]
            batch.next += 1
            guard let plan = try planCompaction(number, resource: resource, owner: owner, horizon: horizon, in: txn)
            else { continue }
            batch.plans.append(plan)
            pruned += plan.prune.count
        }
        return batch
    }

    /// Decides which of one resource's events before the horizon the rules prune. Nil when the resource
    /// has no event before the horizon.
    func planCompaction(
        _ number: UInt64, resource: ResourceID, owner: String, horizon: Timestamp,
        in txn: borrowing some ReadableTransaction & ~Copyable
    ) throws -> CompactionPlan? {
        // Most resources have nothing before the horizon: look at the first timeline key only.
        let prefix = TimelineKeyCodec.prefix(resource: number)
        let cursor = try txn.cursor(schema.timeline)
        guard let first = try cursor.rawSeek(atLeastBytes: prefix), first.key.hasPrefix(prefix) else { return nil }
        guard try cursor.key(of: first).occurredAt < horizon else { return nil }
        let entries = try timeline(resourceNumber: number, in: txn)
        let old = entries.prefix { $0.occurredAt < horizon }
        let lastStop = old.lastIndex { $0.event.kind == .stopped }
        let openBeginnings = old.indices.filter { index in
            old[index].event.kind.isBeginning && (lastStop.map { index > $0 } ?? true)
        }
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
        return CompactionPlan(
            number: number, resource: resource, owner: owner, entries: entries,
            base: try compactionBase(resourceNumber: number, in: txn), prune: prune,
            openingEventsKept: Set([openBeginnings.first, openBeginnings.last].compactMap { $0 }).count)
    }

    /// Prunes a planned resource's events, all of them in this transaction, and keeps what they carried in
    /// the resource's base so that replaying what remains gives exactly the state the whole timeline gives.
    private func apply(_ plan: CompactionPlan, horizon: Timestamp, in txn: borrowing WriteTransaction) throws {
        guard !plan.prune.isEmpty else { return }
        // Fail closed per resource: its rows must cover every hour before the horizon before its events go.
        if var state = try txn.get(schema.resourceState, plan.number), state.accruedUntil < horizon {
            var ownerRows = OwnerRowChanges()
            _ = try materialize(
                resourceNumber: plan.number, state: &state, until: horizon, ownerRows: &ownerRows, in: txn)
            try ownerRows.apply(to: txn, table: schema.ownerHourly)
            try txn.put(schema.resourceState, plan.number, state)
        }
        let prunedSeqs = Set(plan.prune.map(\.0.seq))
        let remaining = plan.entries.filter { !prunedSeqs.contains($0.seq) }
        let full = try Fold.replay(plan.entries, resource: plan.resource, owner: plan.owner, base: plan.base)
        let rest = try Fold.replay(remaining, resource: plan.resource, owner: plan.owner)
        var newBase = CompactionBase()
        newBase.lastOccurredAt = max(plan.base.lastOccurredAt, plan.prune.map(\.0.occurredAt).max() ?? .earliest)
        newBase.unmatchedStops = full.state.unmatchedStops - rest.state.unmatchedStops
        for (name, value) in full.state.adjustmentTotals {
            newBase.adjustmentTotals[name] = value - (rest.state.adjustmentTotals[name] ?? 0)
        }
        let check = try Fold.replay(remaining, resource: plan.resource, owner: plan.owner, base: newBase).state
        guard check == full.state else {
            throw LedgerError.corrupt(
                reason: "compacting \(plan.resource) would change its current state; nothing was pruned")
        }
        var highest: UInt64 = 0
        for (entry, _) in plan.prune {
            try txn.delete(schema.events, entry.seq)
            try txn.delete(
                schema.timeline, TimelineKey(resource: plan.number, occurredAt: entry.occurredAt, seq: entry.seq))
            if try txn.get(schema.eventIDs, entry.event.id) == entry.seq {
                try txn.delete(schema.eventIDs, entry.event.id)
            }
            highest = max(highest, entry.seq)
        }
        try txn.put(schema.compactionBase, plan.number, newBase)
        let through = try txn.get(Meta.prunedThroughSeq, in: schema.meta) ?? 0
        if highest > through { try txn.put(Meta.prunedThroughSeq, highest, in: schema.meta) }
    }

    /// Drops hourly rows of hours before `before` as one key range; returns how many (or would be).
    private func dropSnapshots(before: Timestamp, dryRun: Bool) throws(LedgerError) -> Int {
        let schema = self.schema
        if dryRun {
            return try read { txn in
                var count = 0
                let cursor = try txn.cursor(schema.hourly)
                var entry = try cursor.rawFirst()
                while let current = entry, let hour = ProjectionFormat.hour(ofHourlyKey: current.key),
                    hour < before.microseconds
                {
                    count += 1
                    entry = try cursor.rawNext()
                }
                let spans = try txn.cursor(schema.steady)
                var span = try spans.first()
                while let current = span {
                    let end = current.key.start + current.value.hours * Timestamp.microsecondsPerHour
                    if current.key.start < before.microseconds {
                        count += Int(
                            (min(end, before.microseconds) - current.key.start) / Timestamp.microsecondsPerHour)
                    }
                    span = try spans.next()
                }
                return count
            }
        }
        var total = 0
        while true {
            let (dropped, ownersDropped) = try write { txn -> (Int, Int) in
                // Owner-hour sums go with their hours' rows (there are fewer of them than rows).
                // Both keys begin with the hour.
                func isOld(_ key: UnsafeRawBufferPointer) -> Bool {
                    ProjectionFormat.hour(ofHourlyKey: key).map { $0 < before.microseconds } ?? false
                }
                let rows = try Self.deleteLeading(of: schema.hourly, upTo: 10_000, in: txn, while: isOld)
                let owners = try Self.deleteLeading(of: schema.ownerHourly, upTo: 10_000, in: txn, while: isOld)
                let previous = try txn.get(Meta.snapshotsRetainedFrom, in: schema.meta) ?? .earliest
                if before > previous { try txn.put(Meta.snapshotsRetainedFrom, before, in: schema.meta) }
                return (rows, owners)
            }
            total += dropped
            if dropped < 10_000 && ownersDropped < 10_000 { break }
        }
        // Spans that end by then go; spans that cross it keep their hours from it on.
        return total + (try write { txn in try self.cutSpans(at: before, keeping: .after, in: txn) })
    }

    /// Deletes a table's first entries while `isOld` holds for their key, at most `limit`; returns how many.
    private static func deleteLeading<K, V>(
        of table: Table<K, V>, upTo limit: Int, in txn: borrowing WriteTransaction,
        while isOld: (UnsafeRawBufferPointer) throws -> Bool
    ) throws -> Int {
        var count = 0
        let cursor = try txn.writeCursor(table)
        while count < limit, let current = try cursor.reading.rawFirst(), try isOld(current.key) {
            try cursor.deleteCurrent()
            count += 1
        }
        return count
    }
}

/// One compaction transaction's result: where the next batch starts, and what this one planned (and,
/// unless a dry run, pruned).
struct CompactionBatch: Sendable {
    var next: Int
    var plans: [CompactionPlan]
}

/// What compaction will prune of one resource.
struct CompactionPlan: Sendable {
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
