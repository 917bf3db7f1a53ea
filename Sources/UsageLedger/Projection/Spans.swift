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

    /// The stored spans whose keys begin with `prefix` (one resource's, or one owner's), in key order; with
    /// `overlapping`, only those that share an hour with it (the others are not decoded).
    func storedSpans(
        prefix: [UInt8], overlapping range: Range<Int64>? = nil, in txn: borrowing some ReadableTransaction & ~Copyable
    ) throws -> [(resource: ResourceID, span: SteadySpan)] {
        var spans: [(resource: ResourceID, span: SteadySpan)] = []
        let cursor = try txn.cursor(schema.steady)
        var entry = try cursor.rawSeek(atLeastBytes: prefix)
        while let current = entry, current.key.hasPrefix(prefix) {
            if let range {
                let parsed = try SteadySpan.parse(key: current.key, value: current.value)
                let end = parsed.start + parsed.hours * Timestamp.microsecondsPerHour
                guard parsed.start < range.upperBound, end > range.lowerBound else {
                    entry = try cursor.rawNext()
                    continue
                }
            }
            let key = try cursor.key(of: current)
            let value = try cursor.value(of: current)
            let end = key.start + value.hours * Timestamp.microsecondsPerHour
            spans.append((key.resource, SteadySpan(start: key.start, end: end, footprint: value.footprint)))
            entry = try cursor.rawNext()
        }
        return spans
    }

    /// Stores a span of a resource, merged with the stored one it continues (same footprint, ending where
    /// it starts), so that spans stay maximal: one per steady stretch, however many rollups wrote it. The
    /// caller records its hours in the owner sums (rebuild recomputes them instead).
    /// Returns whether it extended a stored span (rather than begin one).
    @discardableResult
    func putSpan(_ span: SteadySpan, owner: String, resource: ResourceID, in txn: borrowing WriteTransaction) throws
        -> Bool
    {
        guard span.start < span.end else { return false }
        let prefix = SteadySpanKeyCodec.prefix(owner: owner, resource: resource)
        var merged = span
        let cursor = try txn.cursor(schema.steady)
        let after = try cursor.rawSeek(atLeast: SteadySpanKey(owner: owner, resource: resource, start: span.start))
        if let previous = after == nil ? try cursor.rawLast() : try cursor.rawPrevious(), previous.key.hasPrefix(prefix)
        {
            // Compared as bytes: meters are encoded canonically, and decoding them is most of the cost here.
            let stored = try SteadySpan.parse(key: previous.key, value: previous.value)
            if stored.start + stored.hours * Timestamp.microsecondsPerHour == span.start,
                stored.footprint.elementsEqual(SteadySpan.encodedFootprint(span.footprint))
            {
                merged.start = stored.start
            }
        }
        try txn.put(
            schema.steady, SteadySpanKey(owner: owner, resource: resource, start: merged.start),
            (merged.hours, merged.footprint))
        return merged.start != span.start
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

    /// Which side of an instant `cutSpans` keeps.
    enum SpanSide { case before, after }

    /// Cuts every stored span at `instant` (an hour's start) and keeps the hours on one side of it: before
    /// (rebuild keeps the sealed hours before the horizon) or after (retention keeps the hours from the
    /// retained one on). Spans are keyed by resource, so this walks them (one entry per steady stretch, not
    /// per hour) and rewrites only those it cuts. Returns the steady hours dropped.
    func cutSpans(at instant: Timestamp, keeping side: SpanSide, in txn: borrowing WriteTransaction) throws -> Int {
        let cut = instant.microseconds, hour = Timestamp.microsecondsPerHour
        var dropped = 0
        var kept: [(SteadySpanKey, Int64, Meters)] = []
        let cursor = try txn.writeCursor(schema.steady)
        var entry = try cursor.reading.rawFirst()
        while let current = entry {
            let key = try cursor.reading.key(of: current)
            let value = try cursor.reading.value(of: current)
            let end = key.start + value.hours * hour
            let keptPart = side == .before ? (key.start, min(end, cut)) : (max(key.start, cut), end)
            guard keptPart != (key.start, end) else {
                entry = try cursor.reading.rawNext()
                continue
            }
            dropped += Int(value.hours - max(0, keptPart.1 - keptPart.0) / hour)
            if keptPart.0 < keptPart.1 {
                var moved = key
                moved.start = keptPart.0
                kept.append((moved, (keptPart.1 - keptPart.0) / hour, value.footprint))
            }
            try cursor.deleteCurrent()
            entry = try cursor.reading.rawSeek(atLeast: key)
        }
        // Put after the walk: a moved span's key could otherwise come up again under the cursor.
        for (key, hours, footprint) in kept { try txn.put(schema.steady, key, (hours, footprint)) }
        return dropped
    }

    /// Writes what a stretch of a resource materializes to: rows added to the stored ones, spans merged.
    func store(
        _ materialization: Materialization, owner: String, resource: ResourceID,
        ownerRows: inout OwnerRowChanges, in txn: borrowing WriteTransaction
    ) throws -> MaterializedCounts {
        var counts = MaterializedCounts()
        for (hour, amounts) in materialization.rows.sorted(by: { $0.key < $1.key }) {
            try addToRow(hour: hour, owner: owner, resource: resource, amounts, ownerRows: &ownerRows, in: txn)
        }
        counts.rows = materialization.rows.count
        counts.resourceHours = materialization.rows.count
        for span in materialization.spans {
            try ownerRows.record(span: span, owner: owner, sign: 1)
            if try putSpan(span, owner: owner, resource: resource, in: txn) {
                counts.spansExtended += 1
            } else {
                counts.spansBegun += 1
            }
            counts.resourceHours += Int(span.hours)
        }
        return counts
    }
}

/// What materializing did: rows written, spans begun and extended, and the resource-hours they cover.
struct MaterializedCounts: Sendable {
    var rows = 0
    var spansBegun = 0
    var spansExtended = 0
    var resourceHours = 0

    /// Records written: what bounds a transaction.
    var records: Int { rows + spansBegun + spansExtended }

    static func += (total: inout MaterializedCounts, more: MaterializedCounts) {
        total.rows += more.rows
        total.spansBegun += more.spansBegun
        total.spansExtended += more.spansExtended
        total.resourceHours += more.resourceHours
    }
}
