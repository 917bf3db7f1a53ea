import LMDBStorage
import LedgerCore

/// Facts the projector reads once per write transaction.
struct ProjectionContext {
    /// Change to the ledger-wide count of unmatched stops.
    var unmatchedStopsDelta: Int64 = 0
    /// The compaction horizon: events before it can no longer be folded (`too_late`).
    var horizon: Timestamp?
    /// `owner_totals` entries read or changed in this transaction, written once by `write(to:meta:totals:ownerHourly:)`:
    /// a batch of events for one owner would otherwise decode and encode the same entry per event.
    var ownerTotals: [ByteKey: ProjectionFormat.OwnerTotals] = [:]
    /// Changes to `owner_hourly` from rows that late events rewrote, applied by `write`.
    var ownerRows = OwnerRowChanges()

    init(reading txn: borrowing some ReadableTransaction & ~Copyable, meta: Database) throws {
        horizon = try ProjectionMeta.timestamp(txn, meta, ProjectionMeta.horizon)
    }

    /// Writes what the transaction's events changed: owner totals, owner-hour sums, then the unmatched-stop count.
    func write(to txn: borrowing WriteTransaction, meta: Database, totals: Database, ownerHourly: Database) throws {
        try ownerRows.apply(to: txn, database: ownerHourly)
        for (byteKey, entry) in ownerTotals {
            let key = byteKey.bytes
            if entry.running == 0 {
                try txn.delete(totals, key)
            } else {
                try txn.put(totals, key, ProjectionFormat.encode(entry))
            }
        }
        guard unmatchedStopsDelta != 0 else { return }
        let current = try txn.get(meta, ProjectionMeta.unmatchedStops).map { try StorageFormat.decodeNumber($0, what: "unmatched_stops") } ?? 0
        let updated = UInt64(max(0, Int64(current) + unmatchedStopsDelta))
        try txn.put(meta, ProjectionMeta.unmatchedStops, BigEndianKey(updated).bytes)
    }
}

/// A key's bytes as a dictionary key: hashed in one pass (`[UInt8]` hashes byte by byte, which showed
/// up in the append profile).
struct ByteKey: Hashable {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

/// `meta` keys of the projections.
enum ProjectionMeta {
    static let watermark = "watermark"
    static let rollupTarget = "rollup_target"
    static let unmatchedStops = "unmatched_stops"
    static let horizon = "horizon"
    static let prunedThroughSeq = "pruned_through_seq"
    static let snapshotsRetainedFrom = "snapshots_retained_from"

    static func timestamp(_ txn: borrowing some ReadableTransaction & ~Copyable, _ meta: Database, _ key: String) throws -> Timestamp? {
        guard let bytes = try txn.get(meta, key) else { return nil }
        return Timestamp(microseconds: Int64(bitPattern: try StorageFormat.decodeNumber(bytes, what: key)))
    }

    static func put(_ txn: borrowing WriteTransaction, _ meta: Database, _ key: String, _ value: Timestamp) throws {
        try txn.put(meta, key, BigEndianKey(UInt64(bitPattern: value.microseconds)).bytes)
    }
}

extension Ledger {
    /// Folds a newly recorded event into the projections, in the transaction that records it: the current
    /// state, the running index and owner totals always; hourly rows only when the event lies before the
    /// resource's checkpoint (rows after it are written by rollup). Returns whether the event is a stop
    /// that found its resource not running.
    func project(_ event: UsageEvent, seq: UInt64, resourceNumber: UInt64, context: inout ProjectionContext,
                 in txn: borrowing WriteTransaction) throws -> Bool {
        let stateKey = BigEndianKey(resourceNumber)
        let stored = try txn.get(databases.resourceState, stateKey).map { try ProjectionFormat.decodeState($0) }
        let before = stored ?? ResourceState(resource: event.resource, owner: event.owner)
        let t = event.occurredAt
        var after: ResourceState
        if t < before.accruedUntil {
            // Before the checkpoint: the rows it changes are rewritten, and that refold gives the state too.
            after = try rewriteMaterialized(resourceNumber: resourceNumber, before: before, insertedAt: t, excludingSeq: seq,
                                            ownerRows: &context.ownerRows, in: txn)
        } else if stored == nil || t >= before.lastOccurredAt {
            after = before
            try after.apply(event) { _ throws(LedgerError) in }
        } else {
            // A late event after the checkpoint: the current state is the whole timeline's fold again.
            let entries = try timeline(resourceNumber: resourceNumber, in: txn)
            after = try Fold.replay(entries, resource: before.resource, owner: before.owner,
                                    base: compactionBase(resourceNumber: resourceNumber, in: txn)).state
            after.accruedUntil = before.accruedUntil
            after.checkpointRunning = before.checkpointRunning
            after.checkpointFootprint = before.checkpointFootprint
        }
        // A resource with an event at or after its checkpoint is already in `pending` (rollup removes it
        // only once none is left, and `lastOccurredAt` is the latest event's time), so most events skip the lookup.
        let alreadyPending = stored.map { $0.lastOccurredAt >= $0.accruedUntil } ?? false
        if t >= before.accruedUntil && !alreadyPending {
            let key = ProjectionFormat.ownerKey(after.owner, type: after.resource.type, id: after.resource.id)
            if try txn.get(databases.pending, key) == nil { try txn.put(databases.pending, key, BigEndianKey(resourceNumber).bytes) }
        }
        try txn.put(databases.resourceState, stateKey, ProjectionFormat.encode(after))
        try updateCurrent(from: stored, to: after, resourceNumber: resourceNumber, context: &context, in: txn)
        let unmatched = Int64(after.unmatchedStops) - Int64(before.unmatchedStops)
        context.unmatchedStopsDelta += unmatched
        return event.kind == .stopped && unmatched > 0
    }

    /// An event before the checkpoint: rewrite the resource's rows from the event's hour up to the
    /// checkpoint, from the timeline with and without it. Returns the new state, checkpoint unchanged in
    /// time but with the run state the new timeline gives there.
    private func rewriteMaterialized(resourceNumber: UInt64, before: ResourceState, insertedAt t: Timestamp, excludingSeq seq: UInt64,
                                     ownerRows: inout OwnerRowChanges, in txn: borrowing WriteTransaction) throws -> ResourceState {
        let entries = try timeline(resourceNumber: resourceNumber, in: txn)
        let base = try compactionBase(resourceNumber: resourceNumber, in: txn)
        var state = before
        let old = try Fold.replay(entries.filter { $0.seq != seq }, resource: state.resource, owner: state.owner, base: base)
        let new = try Fold.replay(entries, resource: state.resource, owner: state.owner, base: base)
        let from = t.hourFloor, until = state.accruedUntil
        let newRows = try Fold.hourly(new, from: from, until: until)
        for hour in try Fold.hourly(old, from: from, until: until).keys where newRows[hour] == nil {
            let key = ProjectionFormat.hourlyKey(hour: hour, owner: state.owner, resource: state.resource)
            let stored = try txn.get(databases.hourly, key).map { try ProjectionFormat.decodeRow($0) }
            try txn.delete(databases.hourly, key)
            try ownerRows.record(hour: hour, owner: state.owner, from: stored, to: nil)
        }
        for (hour, amounts) in newRows {
            let key = ProjectionFormat.hourlyKey(hour: hour, owner: state.owner, resource: state.resource)
            let stored = try txn.get(databases.hourly, key).map { try ProjectionFormat.decodeRow($0) }
            try txn.put(databases.hourly, key, ProjectionFormat.encode(amounts))
            try ownerRows.record(hour: hour, owner: state.owner, from: stored, to: amounts)
        }
        state = new.state
        state.accruedUntil = until
        (state.checkpointRunning, state.checkpointFootprint) = Fold.checkpoint(new, at: until)
        return state
    }

    /// Writes a resource's hourly rows from its checkpoint up to `target` and moves the checkpoint there;
    /// keeps it in `pending` while it has events at or after `target`. Returns the resource-hours written.
    func materialize(resourceNumber: UInt64, state: inout ResourceState, until target: Timestamp,
                     ownerRows: inout OwnerRowChanges, in txn: borrowing WriteTransaction) throws -> Int {
        guard state.accruedUntil < target else { return 0 }
        let from = state.accruedUntil
        let entries = try timeline(resourceNumber: resourceNumber, from: from, in: txn)
        let fold = Fold.continuing(from: from, running: state.checkpointRunning, footprint: state.checkpointFootprint, entries: entries)
        let rows = try Fold.hourly(fold, from: from, until: target)
        for (hour, amounts) in rows {
            try addToRow(hour: hour, owner: state.owner, resource: state.resource, amounts, ownerRows: &ownerRows, in: txn)
        }
        state.accruedUntil = target
        (state.checkpointRunning, state.checkpointFootprint) = Fold.checkpoint(fold, at: target)
        if !entries.contains(where: { $0.occurredAt >= target }) {
            try txn.delete(databases.pending, ProjectionFormat.ownerKey(state.owner, type: state.resource.type, id: state.resource.id))
        }
        return rows.count
    }

    /// Adds `amounts` to one hourly row, creating it when missing.
    func addToRow(hour: Int64, owner: String, resource: ResourceID, _ amounts: UsageAmounts, ownerRows: inout OwnerRowChanges,
                  in txn: borrowing WriteTransaction) throws {
        let key = ProjectionFormat.hourlyKey(hour: hour, owner: owner, resource: resource)
        let stored = try txn.get(databases.hourly, key).map { try ProjectionFormat.decodeRow($0) }
        var row = stored ?? UsageAmounts()
        try row.add(amounts)
        try txn.put(databases.hourly, key, ProjectionFormat.encode(row))
        try ownerRows.record(hour: hour, owner: owner, from: stored, to: row)
    }

    /// Keeps the `running` index and `owner_totals` in step with a resource's state.
    func updateCurrent(from old: ResourceState?, to new: ResourceState, resourceNumber: UInt64,
                       context: inout ProjectionContext, in txn: borrowing WriteTransaction) throws {
        let wasRunning = old?.running ?? false
        guard wasRunning || new.running else { return }
        if wasRunning, new.running, old?.footprint == new.footprint { return }
        let totalsKey = ByteKey(ProjectionFormat.ownerKey(new.owner, type: new.resource.type))
        var totals = try context.ownerTotals[totalsKey]
            ?? txn.get(databases.ownerTotals, totalsKey.bytes).map { try ProjectionFormat.decodeTotals($0) } ?? .init()
        if let old, wasRunning { try totals.add(old.footprint, sign: -1) }
        if new.running { try totals.add(new.footprint, sign: 1) }
        context.ownerTotals[totalsKey] = totals
        let runningKey = ProjectionFormat.ownerKey(new.owner, type: new.resource.type, id: new.resource.id)
        if new.running && !wasRunning {
            try txn.put(databases.running, runningKey, BigEndianKey(resourceNumber).bytes)
        } else if !new.running && wasRunning {
            try txn.delete(databases.running, runningKey)
        }
    }

    /// What compaction kept of a resource's pruned events.
    func compactionBase(resourceNumber: UInt64, in txn: borrowing some ReadableTransaction & ~Copyable) throws -> CompactionBase {
        try txn.get(databases.compactionBase, BigEndianKey(resourceNumber)).map { try ProjectionFormat.decodeBase($0) } ?? CompactionBase()
    }

    /// A resource's events in timeline order (those at or after `from`), as the fold needs them.
    func timeline(resourceNumber: UInt64, from: Timestamp = .earliest,
                  in txn: borrowing some ReadableTransaction & ~Copyable) throws -> [TimelineEntry] {
        try recordedTimeline(resourceNumber: resourceNumber, from: from, in: txn).map { TimelineEntry(seq: $0.seq, event: $0.event) }
    }

    /// A resource's recorded events in timeline order from `from` on: a range scan of `timeline`, each event
    /// read by `seq`.
    func recordedTimeline(resourceNumber: UInt64, from: Timestamp = .earliest,
                          in txn: borrowing some ReadableTransaction & ~Copyable) throws -> [RecordedEvent] {
        let prefix = StorageFormat.timelinePrefix(resource: resourceNumber)
        var events: [RecordedEvent] = []
        let cursor = try txn.cursor(databases.timeline)
        var entry = try cursor.seek(atLeast: from == .earliest ? prefix : StorageFormat.timelineKey(resource: resourceNumber, occurredAt: from, seq: 0))
        while let current = entry, prefix.withUnsafeBytes({ current.key.hasPrefix($0) }) {
            guard current.key.count == 24 else { throw LedgerError.corrupt(reason: "a timeline key is not 24 bytes") }
            let seq = UInt64(bigEndian: current.key.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
            guard let record = try txn.get(databases.events, BigEndianKey(seq)) else {
                throw LedgerError.corrupt(reason: "the timeline of resource \(resourceNumber) names seq \(seq), which is missing")
            }
            events.append(try EventRecord.decode(record, seq: seq))
            entry = try cursor.next()
        }
        return events
    }
}
