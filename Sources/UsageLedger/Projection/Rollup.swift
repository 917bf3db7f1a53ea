import LMDBStorage
import LedgerCore

/// What one `rollUp` did.
public struct RollupSummary: Sendable, Equatable {
    /// Hours before this instant are materialized for every resource.
    public var watermark: Timestamp
    /// The watermark before this rollup.
    public var previousWatermark: Timestamp?
    /// Running resources whose open run was materialized.
    public var resourcesRolled: Int
    /// Resource-hours materialized (as rows, or inside steady spans).
    public var resourceHours: Int
    /// Hourly rows written (hours with an event).
    public var rowsWritten = 0
    /// Steady spans begun; a span that continues a stored one extends it instead.
    public var spansBegun = 0
    /// Stored steady spans extended.
    public var spansExtended = 0
}

/// What one rollup transaction did: where the next one resumes (nil when the index is done), resources
/// rolled and rows written.
struct RollupBatch: Sendable {
    var lastKey: [UInt8]?
    /// Resources of the batch that had something to materialize.
    var rolled: [UInt64] = []
    var written = MaterializedCounts()
}

extension Ledger {
    /// The default grace before an hour is rolled up: 5 minutes, for events that arrive a little late.
    public static let defaultRollupGraceMicroseconds: Int64 = 5 * 60 * 1_000_000

    /// Materializes every running resource's usage into hourly rows up to the watermark
    /// `floor_to_hour(now - grace)`. Idempotent: a second run, or a run after one interrupted half-way,
    /// gives the same rows. Runs in transactions of at most `batchSize` resources and about 20,000 rows, so
    /// appends are not held up for long.
    public func rollUp(
        now: Timestamp? = nil, graceMicroseconds: Int64 = Ledger.defaultRollupGraceMicroseconds,
        batchSize: Int = Ledger.defaultRollupBatchSize
    ) throws(LedgerError) -> RollupSummary {
        let summary = try rollUp(
            now: now, graceMicroseconds: graceMicroseconds, batchSize: batchSize, stopAfterBatches: nil)
        metrics.resourceHours.increment(by: summary.resourceHours)
        metrics.recordLag(now: now ?? options.clock.now(), watermark: summary.watermark)
        recordMapMetrics()
        if summary.watermark != summary.previousWatermark {
            logger.info(
                "rolled up to \(summary.watermark)",
                metadata: [
                    "resources": "\(summary.resourcesRolled)", "resource_hours": "\(summary.resourceHours)",
                    "previous_watermark": "\(summary.previousWatermark?.rfc3339 ?? "none")",
                ])
        }
        return summary
    }

    /// Records (rows and spans) one rollup transaction writes before it commits and lets appenders in (it
    /// finishes the resource it is on, so one resource with more than this is still one transaction).
    static let rollupRecordsPerTransaction = 20_000

    /// `rollUp`, optionally stopping after some batches as a crash would (for tests).
    func rollUp(now: Timestamp?, graceMicroseconds: Int64, batchSize: Int, stopAfterBatches: Int?) throws(LedgerError)
        -> RollupSummary
    {
        guard batchSize > 0 else { throw .invalidArgument(reason: "batch size must be positive") }
        guard (0...Self.maximumRollupGraceMicroseconds).contains(graceMicroseconds) else {
            throw .invalidArgument(
                reason:
                    "the rollup grace must be 0 to \(Self.maximumRollupGraceMicroseconds / 1_000_000) seconds "
                    + "(got \(graceMicroseconds / 1_000_000))"
            )
        }
        let clock = now ?? options.clock.now()
        let wanted = Timestamp(microseconds: clock.microseconds - graceMicroseconds).hourFloor
        let (previous, target) = try beginRollup(to: wanted)
        var summary = RollupSummary(
            watermark: target, previousWatermark: previous, resourcesRolled: 0, resourceHours: 0)
        guard target > (previous ?? .earliest) else { return summary }
        // Every resource whose rows may lag: running ones and those with events after their checkpoint. Both
        // indexes begin with the owner, so a batch covers few owners and each owner-hour sum is written about
        // once per rollup.
        var rolled = Set<UInt64>()
        var batches = 0
        for index in [schema.running, schema.pending] {
            var resumeAfter: [UInt8]? = nil
            while true {
                if let stopAfterBatches, batches >= stopAfterBatches {
                    summary.resourcesRolled = rolled.count
                    return summary
                }
                let batch = try rollUpBatch(of: index, after: resumeAfter, to: target, batchSize: batchSize)
                batches += 1
                yieldToWaitingWriters()
                rolled.formUnion(batch.rolled)
                summary.resourceHours += batch.written.resourceHours
                summary.rowsWritten += batch.written.rows
                summary.spansBegun += batch.written.spansBegun
                summary.spansExtended += batch.written.spansExtended
                guard let lastKey = batch.lastKey else { break }
                resumeAfter = lastKey
            }
        }
        summary.resourcesRolled = rolled.count
        let meta = schema.meta
        try write { txn in
            try txn.put(Meta.watermark, target, in: meta)
            try txn.delete(Meta.rollupTarget, in: meta)
        }
        return summary
    }

    /// Records the rollup's target (so that an interrupted rollup resumes it); returns the watermark before
    /// it and the target.
    private func beginRollup(to wanted: Timestamp) throws(LedgerError) -> (Timestamp?, Timestamp) {
        let meta = schema.meta
        return try write { txn -> (Timestamp?, Timestamp) in
            let previous = try txn.get(Meta.watermark, in: meta)
            let pending = try txn.get(Meta.rollupTarget, in: meta)
            let target = max(wanted, pending ?? .earliest, previous ?? .earliest)
            if target > (previous ?? .earliest) { try txn.put(Meta.rollupTarget, target, in: meta) }
            return (previous, target)
        }
    }

    /// Materializes, in one transaction, the resources of `index` after the key `resumeAfter`: at most
    /// `batchSize` of them and about `rollupRecordsPerTransaction` rows and spans.
    private func rollUpBatch(
        of index: Table<OwnedResourceKeyCodec, BigEndianUInt64>, after resumeAfter: [UInt8]?,
        to target: Timestamp, batchSize: Int
    ) throws(LedgerError) -> RollupBatch {
        try write { txn -> RollupBatch in
            // Collect the batch first: materializing deletes `pending` entries under the cursor.
            var resources: [([UInt8], UInt64)] = []
            let cursor = try txn.cursor(index)
            var entry = try resumeAfter.map { key in try cursor.rawSeek(atLeastBytes: key + [0]) } ?? cursor.rawFirst()
            while let current = entry, resources.count < batchSize {
                resources.append((Array(current.key), try cursor.value(of: current)))
                entry = try cursor.rawNext()
            }
            var batch = RollupBatch()
            var ownerRows = OwnerRowChanges()
            for (key, number) in resources {
                // Bound the transaction by work, not only by resources: appenders wait for it.
                if batch.written.records >= Self.rollupRecordsPerTransaction { break }
                batch.lastKey = key
                guard var state = try txn.get(self.schema.resourceState, number) else {
                    throw LedgerError.corrupt(reason: "indexed resource \(number) has no state")
                }
                let checkpoint = state.accruedUntil
                let written = try self.materialize(
                    resourceNumber: number, state: &state, until: target,
                    ownerRows: &ownerRows, in: txn)
                if state.accruedUntil != checkpoint { try txn.put(self.schema.resourceState, number, state) }
                if written.records > 0 { batch.rolled.append(number) }
                batch.written += written
            }
            try ownerRows.apply(to: txn, table: self.schema.ownerHourly)
            return batch
        }
    }

    /// The rollup watermark: hours before it are materialized for every resource (nil before any rollup).
    public func watermark() throws(LedgerError) -> Timestamp? {
        try read { txn in try txn.get(Meta.watermark, in: schema.meta) }
    }
}
