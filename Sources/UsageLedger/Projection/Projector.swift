import LMDBStorage
import LedgerCore

/// Facts the projector reads once per write transaction.
struct ProjectionContext {
    /// Change to the ledger-wide count of unmatched stops.
    var unmatchedStopsDelta: Int64 = 0
    /// The compaction horizon: events before it can no longer be folded (`too_late`).
    var horizon: Timestamp?
    /// `owner_totals` entries read or changed in this transaction, written once by `write(to:schema:)`:
    /// a batch of events for one owner would otherwise decode and encode the same entry per event.
    var ownerTotals: [OwnerType: ProjectionFormat.OwnerTotals] = [:]
    /// Changes to `owner_hourly` from rows that late events rewrote, applied by `write`.
    var ownerRows = OwnerRowChanges()
    /// Resource states read or changed in this transaction, written once each by `write`, in key order: a
    /// batch often holds several events of one resource, and decoding and encoding its state record per
    /// event was a large part of an append.
    var states: [UInt64: ResourceState] = [:]

    init(reading txn: borrowing some ReadableTransaction & ~Copyable, meta: Table<UTF8Text, RawBytes>) throws {
        horizon = try txn.get(Meta.horizon, in: meta)
    }

    /// Writes what the transaction's events changed: owner totals, owner-hour sums, then the unmatched-stop count.
    func write(to txn: borrowing WriteTransaction, schema: Schema) throws {
        for number in states.keys.sorted() {
            guard let state = states[number] else { continue }
            try txn.put(schema.resourceState, number, state)
        }
        try ownerRows.apply(to: txn, table: schema.ownerHourly)
        for (key, entry) in ownerTotals {
            if entry.running == 0 {
                try txn.delete(schema.ownerTotals, key)
            } else {
                try txn.put(schema.ownerTotals, key, entry)
            }
        }
        guard unmatchedStopsDelta != 0 else { return }
        let current = try txn.get(Meta.unmatchedStops, in: schema.meta) ?? 0
        let updated = UInt64(max(0, Int64(current) + unmatchedStopsDelta))
        try txn.put(Meta.unmatchedStops, updated, in: schema.meta)
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

extension Ledger {
    /// Folds a newly recorded event into the projections, in the transaction that records it: the current
    /// state, the running index and owner totals always; hourly rows only when the event lies before the
    /// resource's checkpoint (rows after it are written by rollup). Returns whether the event is a stop
    /// that found its resource not running.
    func project(
        _ event: UsageEvent, seq: UInt64, resourceNumber: UInt64, context: inout ProjectionContext,
        in txn: borrowing WriteTransaction
    ) throws -> Bool {
        let stored = try context.states[resourceNumber] ?? txn.get(schema.resourceState, resourceNumber)
        let before = stored ?? ResourceState(resource: event.resource, owner: event.owner)
        let t = event.occurredAt
        var after: ResourceState
        if t < before.accruedUntil {
            // Before the checkpoint: the rows it changes are rewritten, and that refold gives the state too.
            after = try rewriteMaterialized(
                resourceNumber: resourceNumber, before: before, insertedAt: t, excludingSeq: seq,
                ownerRows: &context.ownerRows, in: txn)
        } else if stored == nil || t >= before.lastOccurredAt {
            after = before
            try after.apply(event) { _ throws(LedgerError) in }
        } else {
            // A late event after the checkpoint: the current state is the whole timeline's fold again.
            let entries = try timeline(resourceNumber: resourceNumber, in: txn)
            after = try Fold.replay(
                entries, resource: before.resource, owner: before.owner,
                base: compactionBase(resourceNumber: resourceNumber, in: txn)
            ).state
            after.accruedUntil = before.accruedUntil
            after.checkpointRunning = before.checkpointRunning
            after.checkpointFootprint = before.checkpointFootprint
        }
        // A resource with an event at or after its checkpoint is already in `pending` (rollup removes it
        // only once none is left, and `lastOccurredAt` is the latest event's time), so most events skip the lookup.
        let alreadyPending = stored.map { $0.lastOccurredAt >= $0.accruedUntil } ?? false
        if t >= before.accruedUntil && !alreadyPending {
            let key = EncodedKey<OwnedResourceKeyCodec>(OwnedResource(owner: after.owner, resource: after.resource))
            if try txn.get(schema.pending, encoded: key) == nil {
                try txn.put(schema.pending, encoded: key, resourceNumber)
            }
        }
        context.states[resourceNumber] = after
        try updateCurrent(from: stored, to: after, resourceNumber: resourceNumber, context: &context, in: txn)
        let unmatched = Int64(after.unmatchedStops) - Int64(before.unmatchedStops)
        context.unmatchedStopsDelta += unmatched
        return event.kind == .stopped && unmatched > 0
    }

    /// An event before the checkpoint: rewrite the resource's rows and spans from the event's hour up to
    /// the checkpoint, from the timeline with it. Returns the new state, checkpoint unchanged in time but
    /// with the run state the new timeline gives there.
    private func rewriteMaterialized(
        resourceNumber: UInt64, before: ResourceState, insertedAt t: Timestamp, excludingSeq seq: UInt64,
        ownerRows: inout OwnerRowChanges, in txn: borrowing WriteTransaction
    ) throws -> ResourceState {
        let entries = try timeline(resourceNumber: resourceNumber, in: txn)
        let base = try compactionBase(resourceNumber: resourceNumber, in: txn)
        var state = before
        let new = try Fold.replay(entries, resource: state.resource, owner: state.owner, base: base)
        let from = t.hourFloor, until = state.accruedUntil
        // Rows exist only in hours with an event, and the old timeline's events are all in the new one.
        let eventHours = FoldResult.eventHours(entries, from: from, until: until)
        let rewritten = try Materialization(new, eventHours: eventHours, from: from, until: until)
        for hour in eventHours.sorted() {
            let key = EncodedKey<HourlyKeyCodec>(HourlyKey(hour: hour, owner: state.owner, resource: state.resource))
            let stored = try txn.get(schema.hourly, encoded: key)
            let row = rewritten.rows[hour]
            if let row {
                try txn.put(schema.hourly, encoded: key, row)
            } else if stored != nil {
                try txn.delete(schema.hourly, encoded: key)
            }
            try ownerRows.record(hour: hour, owner: state.owner, from: stored, to: row)
        }
        try removeSpans(
            owner: state.owner, resource: state.resource, from: from.microseconds, until: until.microseconds,
            ownerRows: &ownerRows, in: txn)
        for span in rewritten.spans {
            try ownerRows.record(span: span, owner: state.owner, sign: 1)
            try putSpan(span, owner: state.owner, resource: state.resource, in: txn)
        }
        state = new.state
        state.accruedUntil = until
        (state.checkpointRunning, state.checkpointFootprint) = Fold.checkpoint(new, at: until)
        return state
    }

    /// Writes a resource's hourly rows and steady spans from its checkpoint up to `target` and moves the
    /// checkpoint there; keeps it in `pending` while it has events at or after `target`. Returns what it
    /// wrote.
    func materialize(
        resourceNumber: UInt64, state: inout ResourceState, until target: Timestamp,
        ownerRows: inout OwnerRowChanges, in txn: borrowing WriteTransaction
    ) throws -> MaterializedCounts {
        guard state.accruedUntil < target else { return MaterializedCounts() }
        let from = state.accruedUntil
        // Only the events before the target matter here (and whether any comes after it).
        let entries = try timeline(resourceNumber: resourceNumber, from: from, until: target, in: txn)
        let fold = Fold.continuing(
            from: from, running: state.checkpointRunning, footprint: state.checkpointFootprint, entries: entries)
        let materialization = try Materialization(
            fold, eventHours: FoldResult.eventHours(entries, from: from, until: target), from: from, until: target)
        let written = try store(
            materialization, owner: state.owner, resource: state.resource, ownerRows: &ownerRows, in: txn)
        state.accruedUntil = target
        (state.checkpointRunning, state.checkpointFootprint) = Fold.checkpoint(fold, at: target)
        if try !hasTimelineEntry(resourceNumber: resourceNumber, atOrAfter: target, in: txn) {
            try txn.delete(schema.pending, OwnedResource(owner: state.owner, resource: state.resource))
        }
        return written
    }

    /// Adds `amounts` to one hourly row, creating it when missing.
    func addToRow(
        hour: Int64, owner: String, resource: ResourceID, _ amounts: UsageAmounts, ownerRows: inout OwnerRowChanges,
        in txn: borrowing WriteTransaction
    ) throws {
        // Encoded once for the read and the write: building the key is a good part of a row's cost.
        let key = EncodedKey<HourlyKeyCodec>(HourlyKey(hour: hour, owner: owner, resource: resource))
        let stored = try txn.get(schema.hourly, encoded: key)
        var row = stored ?? UsageAmounts()
        try row.add(amounts)
        try txn.put(schema.hourly, encoded: key, row)
        try ownerRows.record(hour: hour, owner: owner, from: stored, to: row)
    }

    /// Keeps the `running` index and `owner_totals` in step with a resource's state.
    func updateCurrent(
        from old: ResourceState?, to new: ResourceState, resourceNumber: UInt64,
        context: inout ProjectionContext, in txn: borrowing WriteTransaction
    ) throws {
        let wasRunning = old?.running ?? false
        guard wasRunning || new.running else { return }
        if wasRunning, new.running, old?.footprint == new.footprint { return }
        let totalsKey = OwnerType(owner: new.owner, type: new.resource.type)
        var totals = try context.ownerTotals[totalsKey] ?? txn.get(schema.ownerTotals, totalsKey) ?? .init()
        if let old, wasRunning { try totals.add(old.footprint, sign: -1) }
        if new.running { try totals.add(new.footprint, sign: 1) }
        context.ownerTotals[totalsKey] = totals
        let runningKey = OwnedResource(owner: new.owner, resource: new.resource)
        if new.running && !wasRunning {
            try txn.put(schema.running, runningKey, resourceNumber)
        } else if !new.running && wasRunning {
            try txn.delete(schema.running, runningKey)
        }
    }

    /// What compaction kept of a resource's pruned events.
    func compactionBase(resourceNumber: UInt64, in txn: borrowing some ReadableTransaction & ~Copyable) throws
        -> CompactionBase
    {
        try txn.get(schema.compactionBase, resourceNumber) ?? CompactionBase()
    }

    /// A resource's events in timeline order (those in `[from, until)`), as the fold needs them.
    func timeline(
        resourceNumber: UInt64, from: Timestamp = .earliest, until: Timestamp? = nil,
        in txn: borrowing some ReadableTransaction & ~Copyable
    ) throws -> [TimelineEntry] {
        try recordedTimeline(resourceNumber: resourceNumber, from: from, until: until, in: txn).map {
            TimelineEntry(seq: $0.seq, event: $0.event)
        }
    }

    /// Whether a resource has an event at or after `instant` (one seek, nothing decoded).
    func hasTimelineEntry(
        resourceNumber: UInt64, atOrAfter instant: Timestamp, in txn: borrowing some ReadableTransaction & ~Copyable
    ) throws -> Bool {
        let prefix = TimelineKeyCodec.prefix(resource: resourceNumber)
        let cursor = try txn.cursor(schema.timeline)
        let entry = try cursor.rawSeek(atLeast: TimelineKey(resource: resourceNumber, occurredAt: instant, seq: 0))
        return entry.map { $0.key.hasPrefix(prefix) } ?? false
    }

    /// A resource's recorded events in timeline order from `from` on: a range scan of `timeline`, each event
    /// read by `seq`.
    func recordedTimeline(
        resourceNumber: UInt64, from: Timestamp = .earliest, until: Timestamp? = nil,
        in txn: borrowing some ReadableTransaction & ~Copyable
    ) throws -> [RecordedEvent] {
        let prefix = TimelineKeyCodec.prefix(resource: resourceNumber)
        var events: [RecordedEvent] = []
        var names = LogNames(schema: schema)
        let cursor = try txn.cursor(schema.timeline)
        var entry =
            from == .earliest
            ? try cursor.rawSeek(atLeastBytes: prefix)
            : try cursor.rawSeek(atLeast: TimelineKey(resource: resourceNumber, occurredAt: from, seq: 0))
        while let current = entry, current.key.hasPrefix(prefix) {
            let key = try cursor.key(of: current)
            if let until, key.occurredAt >= until { break }
            let seq = key.seq
            guard let record = try txn.rawGet(schema.events, seq) else {
                throw LedgerError.corrupt(
                    reason: "the timeline of resource \(resourceNumber) names seq \(seq), which is missing")
            }
            let fields = try EventRecord.fields(of: record, seq: seq)
            guard fields.resourceNumber == resourceNumber else {
                throw LedgerError.corrupt(
                    reason: "the timeline of resource \(resourceNumber) names seq \(seq), an event of resource "
                        + "\(fields.resourceNumber)")
            }
            events.append(try fields.resolved(seq: seq, names: &names, in: txn))
            entry = try cursor.rawNext()
        }
        return events
    }
}
