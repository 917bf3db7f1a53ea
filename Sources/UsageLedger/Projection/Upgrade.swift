import LMDBStorage
import LedgerCore

extension Ledger {
    /// Upgrades an older on-disk format to the current one in one write transaction: killed at any moment,
    /// the ledger is still the old format (LMDB commits all or nothing) and the next open for writing
    /// starts again.
    ///
    /// Format 1 had the log only; 2 materialized rows on append; 3 in rollup; 4 added `owner_hourly`; 5
    /// stores steady hours as spans and sums in their smallest encoding. Projections are derived from the
    /// log, so rebuilding them upgrades them; the rows before the compaction horizon are sealed (their
    /// events are gone) and are converted instead: whole steady hours become spans, the rest re-encoded.
    func upgrade(from found: UInt32) throws(LedgerError) {
        let current = StorageFormat.currentVersion
        logger.notice("upgrading the on-disk format from \(found) to \(current) by rebuilding the projections")
        let meta = schema.meta
        let summary = try write { txn -> (RebuildSummary, SealedConversion) in
            let floor = try self.firstSnapshotHour(in: txn)  // before the rows it reads become spans
            let converted = try self.convertSealedRows(in: txn)
            let summary = try self.rebuildProjections(in: txn, storedFloor: .some(floor))
            try txn.put(Meta.formatVersion, current, in: meta)
            return (summary, converted)
        }
        logger.notice(
            "upgraded the on-disk format to \(current)",
            metadata: [
                "resources": "\(summary.0.resources)", "events": "\(summary.0.events)",
                "hourly_rows": "\(summary.0.hourlyRows)", "steady_spans": "\(summary.0.steadySpans)",
                "sealed_rows_kept": "\(summary.1.rowsKept)", "sealed_rows_to_spans": "\(summary.1.rowsToSpans)",
            ])
    }

    /// Rewrites the sealed rows (hours before the horizon) of an older format: a whole hour of running with
    /// no adjustment, each meter a whole multiple of an hour, is a steady hour and joins its resource's
    /// span; any other row is re-encoded as it is. Rows at or after the horizon are left to the rebuild.
    private func convertSealedRows(in txn: borrowing WriteTransaction) throws -> SealedConversion {
        let horizon = try txn.get(Meta.horizon, in: schema.meta) ?? .earliest
        var conversion = SealedConversion()
        var kept: [([UInt8], UsageAmounts)] = []
        let cursor = try txn.writeCursor(schema.hourly)
        var entry = try cursor.reading.rawFirst()
        while let current = entry {
            guard let hour = ProjectionFormat.hour(ofHourlyKey: current.key), hour < horizon.microseconds else { break }
            let key = try cursor.reading.key(of: current)
            let amounts = try cursor.reading.value(of: current)
            if let footprint = Self.steadyFootprint(of: amounts) {
                try conversion.add(hour: hour, key: key, footprint: footprint, ledger: self, in: txn)
                try cursor.deleteCurrent()
                entry = try cursor.reading.rawSeek(atLeast: key)
            } else {
                kept.append((Array(current.key), amounts))
                entry = try cursor.reading.rawNext()
            }
        }
        try conversion.finish(ledger: self, in: txn)
        for (key, amounts) in kept { try txn.put(schema.hourly, encoded: EncodedKey(encodedBytes: key), amounts) }
        conversion.rowsKept = kept.count
        return conversion
    }

    /// The footprint a row is exactly one steady hour of, or nil when it is not one.
    static func steadyFootprint(of row: UsageAmounts) -> Meters? {
        let hour = Int128(Timestamp.microsecondsPerHour)
        guard row.runningMicroseconds == hour, row.adjustments.isEmpty else { return nil }
        var pairs: [(String, Int64)] = []
        for (name, value) in row.meterMicroseconds {
            guard value >= 0, value % hour == 0, let meter = Int64(exactly: value / hour) else { return nil }
            pairs.append((name, meter))
        }
        return Meters(pairs)
    }
}

/// Sealed steady hours of an upgrade, gathered into spans: rows come hour by hour, so each resource has at
/// most one open span at a time, written when its run breaks.
struct SealedConversion: Sendable {
    private var open: [OwnedResource: SteadySpan] = [:]
    var rowsToSpans = 0
    var rowsKept = 0

    mutating func add(
        hour: Int64, key: HourlyKey, footprint: Meters, ledger: Ledger, in txn: borrowing WriteTransaction
    ) throws {
        rowsToSpans += 1
        let resource = OwnedResource(owner: key.owner, resource: key.resource)
        if var span = open[resource], span.end == hour, span.footprint == footprint {
            span.end = hour + Timestamp.microsecondsPerHour
            open[resource] = span
            return
        }
        if let finished = open[resource] { try Self.put(finished, resource, ledger: ledger, in: txn) }
        open[resource] = SteadySpan(start: hour, end: hour + Timestamp.microsecondsPerHour, footprint: footprint)
    }

    mutating func finish(ledger: Ledger, in txn: borrowing WriteTransaction) throws {
        for (resource, span) in open { try Self.put(span, resource, ledger: ledger, in: txn) }
        open = [:]
    }

    private static func put(
        _ span: SteadySpan, _ resource: OwnedResource, ledger: Ledger, in txn: borrowing WriteTransaction
    ) throws {
        try txn.put(
            ledger.schema.steady, SteadySpanKey(owner: resource.owner, resource: resource.resource, start: span.start),
            (span.hours, span.footprint))
    }
}
