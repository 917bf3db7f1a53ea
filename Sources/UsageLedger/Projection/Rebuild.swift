import LMDBStorage
import LedgerCore

/// What `rebuild` did.
public struct RebuildSummary: Sendable, Equatable {
    /// Resources folded.
    public var resources: Int
    /// Events replayed.
    public var events: Int
    /// Hourly rows written.
    public var hourlyRows: Int
    /// Steady spans written (merged into a sealed span where they continue it).
    public var steadySpans: Int = 0
}

extension Ledger {
    /// Rewrites every projection from the log alone, in one transaction (readers see the old projections
    /// or the new ones, never a mix). Every projection table of the schema is renewed by its rebuild rule.
    public func rebuild() throws(LedgerError) -> RebuildSummary {
        let summary = try write { txn in try self.rebuildProjections(in: txn) }
        logger.notice(
            "rebuilt the projections from the log",
            metadata: [
                "resources": "\(summary.resources)", "events": "\(summary.events)",
                "hourly_rows": "\(summary.hourlyRows)",
            ])
        return summary
    }

    /// Rebuilds every projection. `storedFloor` is the first hour the stored snapshots held before this
    /// transaction changed them (an upgrade reads it before converting rows); nil: read it here.
    func rebuildProjections(in txn: borrowing WriteTransaction, storedFloor: Int64?? = nil) throws -> RebuildSummary {
        let meta = schema.meta
        var floor = try storedFloor ?? firstSnapshotHour(in: txn)
        let watermark = try txn.get(Meta.watermark, in: meta)
        let target = try txn.get(Meta.rollupTarget, in: meta)
        let materializeUntil = max(watermark ?? .earliest, target ?? .earliest)
        // Hours before the compaction horizon are sealed: their events are gone, their rows stay.
        let horizon = try txn.get(Meta.horizon, in: meta) ?? .earliest
        try clearProjections(keepingRowsBefore: horizon, in: txn)
        var summary = RebuildSummary(resources: 0, events: 0, hourlyRows: 0)
        var unmatched: UInt64 = 0
        var context = try ProjectionContext(reading: txn, meta: meta)
        for (number, resource, owner) in try allResources(in: txn) {
            let entries = try timeline(resourceNumber: number, in: txn)
            let base = try compactionBase(resourceNumber: number, in: txn)
            let (state, materialized) = try expectedProjection(
                entries, resource: resource, owner: owner, base: base,
                materializeUntil: materializeUntil, rowsFrom: horizon)
            for (hour, amounts) in materialized.rows {
                try txn.put(schema.hourly, HourlyKey(hour: hour, owner: state.owner, resource: state.resource), amounts)
            }
            // owner_hourly is recomputed from the rows and spans below.
            for span in materialized.spans { try putSpan(span, owner: owner, resource: resource, in: txn) }
            for hour in [materialized.spans.first?.start, materialized.rows.keys.min()].compactMap({ $0 }) {
                floor = min(floor ?? hour, hour)
            }
            try txn.put(schema.resourceState, number, state)
            try updateCurrent(from: nil, to: state, resourceNumber: number, context: &context, in: txn)
            if entries.contains(where: { $0.occurredAt >= state.accruedUntil }) {
                try txn.put(schema.pending, OwnedResource(owner: owner, resource: resource), number)
            }
            unmatched += state.unmatchedStops
            summary.resources += 1
            summary.events += entries.count
            summary.hourlyRows += materialized.rows.count
            summary.steadySpans += materialized.spans.count
        }
        context.unmatchedStopsDelta = 0
        try context.write(to: txn, schema: schema)
        // Every owner-hour, sealed hours included (an upgrade from format 3 has none yet), swept over the
        // hours the snapshots hold: from the first stored or rebuilt one to the watermark.
        try rewriteOwnerRows(
            from: Timestamp(microseconds: floor ?? materializeUntil.microseconds), until: materializeUntil, in: txn)
        try txn.put(Meta.unmatchedStops, unmatched, in: meta)
        if materializeUntil > .earliest { try txn.put(Meta.watermark, materializeUntil, in: meta) }
        try txn.delete(Meta.rollupTarget, in: meta)
        return summary
    }

    /// Empties every projection table as its rebuild rule says, so that no entry of the old projections
    /// survives unless it is sealed (rows of hours before the horizon).
    private func clearProjections(keepingRowsBefore horizon: Timestamp, in txn: borrowing WriteTransaction) throws {
        for declaration in Schema.declarations where declaration.role == .projection {
            guard let table = schema.identities[declaration] else { throw StorageError.tableMissing(declaration.name) }
            switch declaration.rebuild {
            case .refill?: try txn.clear(table)
            case .refillFromHorizon?: try deleteRows(from: horizon, in: txn)
            case .cutAtHorizon?:
                // The part before the horizon stays (sealed); the rest is refilled.
                if horizon > .earliest {
                    _ = try cutSpans(at: horizon, keeping: .before, in: txn)
                } else {
                    try txn.clear(schema.steady.id)  // nothing is sealed
                }
            case .recomputeFromRows?: break  // rewritten from the rows at the end
            case nil:
                throw LedgerError.corrupt(reason: "the projection table '\(declaration.name)' has no rebuild rule")
            }
        }
    }

    /// Deletes the hourly rows of hours at or after `from`, as one key range.
    func deleteRows(from: Timestamp, in txn: borrowing WriteTransaction) throws {
        var writer = ByteWriter(capacity: 8)
        writer.writeOrdered(from.microseconds)
        let cursor = try txn.writeCursor(schema.hourly)
        var entry = try cursor.reading.rawSeek(atLeastBytes: writer.bytes)
        while entry != nil {
            try cursor.deleteCurrent()
            entry = try cursor.reading.rawSeek(atLeastBytes: writer.bytes)
        }
    }

    /// The first hour of the stored snapshots: of `owner_hourly` (which sums every row and steady hour)
    /// or `hourly`, whichever is earlier; nil when both are empty. No stored span can begin before it.
    func firstSnapshotHour(in txn: borrowing some ReadableTransaction & ~Copyable) throws -> Int64? {
        let hours = [
            try txn.cursor(schema.ownerHourly).rawFirst().flatMap { ProjectionFormat.hour(ofHourlyKey: $0.key) },
            try txn.cursor(schema.hourly).rawFirst().flatMap { ProjectionFormat.hour(ofHourlyKey: $0.key) },
        ]
        return hours.compactMap { $0 }.min()
    }

    /// The state, and the rows and spans, that a timeline gives when running usage is materialized from
    /// `rowsFrom` to `materializeUntil`.
    func expectedProjection(
        _ entries: [TimelineEntry], resource: ResourceID, owner: String, base: CompactionBase,
        materializeUntil: Timestamp, rowsFrom: Timestamp
    ) throws -> (ResourceState, Materialization) {
        let fold = try Fold.replay(entries, resource: resource, owner: owner, base: base)
        var state = fold.state
        state.accruedUntil = materializeUntil
        (state.checkpointRunning, state.checkpointFootprint) = Fold.checkpoint(fold, at: materializeUntil)
        let materialized = try Materialization(
            fold, eventHours: FoldResult.eventHours(entries, from: rowsFrom, until: materializeUntil),
            from: rowsFrom, until: materializeUntil)
        return (state, materialized)
    }

    /// Every resource the ledger has seen: its number, identity and owner.
    func allResources(in txn: borrowing some ReadableTransaction & ~Copyable) throws -> [(UInt64, ResourceID, String)] {
        var resources: [(UInt64, ResourceID, String)] = []
        let cursor = try txn.cursor(schema.resources)
        var entry = try cursor.first()
        while let current = entry {
            resources.append((current.value.number, current.key, current.value.owner))
            entry = try cursor.next()
        }
        return resources
    }
}
