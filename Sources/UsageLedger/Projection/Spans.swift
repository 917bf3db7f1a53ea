import LMDBStorage
import LedgerCore

extension Ledger {
    /// The stored spans of one resource that overlap `[from, until)`, in time order (unclipped).
    func storedSpans(
        owner: String, resource: ResourceID, overlapping from: Int64 = Int64.min, until: Int64 = Int64.max,
        in txn: borrowing some ReadableTransaction & ~Copyable
    ) throws -> [SteadySpan] {
        try storedSpans(prefix: SteadySpanKeyCodec.prefix(owner: owner, resource: resource), in: txn).compactMap {
            $0.span.start < until && $0.span.end > from ? $0.span : nil
        }
    }

    /// The stored spans whose keys begin with `prefix` (one resource's, or one owner's), in key order.
    func storedSpans(prefix: [UInt8], in txn: borrowing some ReadableTransaction & ~Copyable) throws
        -> [(resource: ResourceID, span: SteadySpan)]
    {
        var spans: [(resource: ResourceID, span: SteadySpan)] = []
        let cursor = try txn.cursor(schema.steady)
        var entry = try cursor.rawSeek(atLeastBytes: prefix)
        while let current = entry, current.key.hasPrefix(prefix) {
            let key = try cursor.key(of: current)
            let value = try cursor.value(of: current)
            let end = key.start + value.hours * Timestamp.microsecondsPerHour
            spans.append((key.resource, SteadySpan(start: key.start, end: end, footprint: value.footprint)))
            entry = try cursor.rawNext()
        }
        return spans
    }

    /// Stores a span of a resource, merged with the stored one it continues (same footprint, ending where
    /// it starts), so that spans stay maximal: one per steady stretch, however many rollups wrote it.
    func putSpan(
        _ span: SteadySpan, owner: String, resource: ResourceID, ownerRows: inout OwnerRowChanges,
        in txn: borrowing WriteTransaction
    ) throws {
        guard span.start < span.end else { return }
        try ownerRows.record(span: span, owner: owner, sign: 1)
        let prefix = SteadySpanKeyCodec.prefix(owner: owner, resource: resource)
        var merged = span
        let cursor = try txn.cursor(schema.steady)
        let after = try cursor.rawSeek(atLeast: SteadySpanKey(owner: owner, resource: resource, start: span.start))
        if let previous = after == nil ? try cursor.rawLast() : try cursor.rawPrevious(), previous.key.hasPrefix(prefix)
        {
            let key = try cursor.key(of: previous)
            let value = try cursor.value(of: previous)
            if key.start + value.hours * Timestamp.microsecondsPerHour == span.start, value.footprint == span.footprint
            {
                merged.start = key.start
            }
        }
        try txn.put(
            schema.steady, SteadySpanKey(owner: owner, resource: resource, start: merged.start),
            (merged.hours, merged.footprint))
    }

    /// Removes a resource's steady hours in `[from, until)`: spans inside are deleted, spans crossing an
    /// end keep their part outside. Records the removed hours in `ownerRows`.
    func removeSpans(
        owner: String, resource: ResourceID, from: Int64, until: Int64, ownerRows: inout OwnerRowChanges,
        in txn: borrowing WriteTransaction
    ) throws {
        for span in try storedSpans(owner: owner, resource: resource, overlapping: from, until: until, in: txn) {
            if let removed = span.clipped(from: from, until: until) {
                try ownerRows.record(span: removed, owner: owner, sign: -1)
            }
            try txn.delete(schema.steady, SteadySpanKey(owner: owner, resource: resource, start: span.start))
            if span.start < from {
                try txn.put(
                    schema.steady, SteadySpanKey(owner: owner, resource: resource, start: span.start),
                    ((from - span.start) / Timestamp.microsecondsPerHour, span.footprint))
            }
            if span.end > until {
                try txn.put(
                    schema.steady, SteadySpanKey(owner: owner, resource: resource, start: until),
                    ((span.end - until) / Timestamp.microsecondsPerHour, span.footprint))
            }
        }
    }

    /// Writes what a stretch of a resource materializes to: rows added to the stored ones, spans merged.
    /// Returns the records written (rows and spans) and the resource-hours they cover.
    func store(
        _ materialization: Materialization, owner: String, resource: ResourceID,
        ownerRows: inout OwnerRowChanges, in txn: borrowing WriteTransaction
    ) throws -> (records: Int, resourceHours: Int) {
        for (hour, amounts) in materialization.rows.sorted(by: { $0.key < $1.key }) {
            try addToRow(hour: hour, owner: owner, resource: resource, amounts, ownerRows: &ownerRows, in: txn)
        }
        var hours = materialization.rows.count
        for span in materialization.spans {
            try putSpan(span, owner: owner, resource: resource, ownerRows: &ownerRows, in: txn)
            hours += Int(span.hours)
        }
        return (materialization.rows.count + materialization.spans.count, hours)
    }
}
