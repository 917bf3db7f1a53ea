import LedgerCore
import Logging
import PostgresNIO
import UsageLedger

extension PostgresExporter {
    /// Owners whose hours one transaction writes, and the most hours one query asks for.
    static let ownersPerTransaction = 50
    static let hoursPerQuery: Int64 = 24 * 7

    /// Exports the hours the ledger sealed (before its rollup watermark) since the last export, every
    /// resource with usage in them, then moves the cell's hourly marker. Rows are upserts, so a run killed
    /// before the marker moved writes the same rows again; returns how many it wrote.
    public func exportSealedHours() async throws(ExportError) -> Int {
        guard options.exportsHourly else { return 0 }
        let (watermark, owners, first) = try await perform { [self] in
            try await ledger.async.run { (ledger) throws(LedgerError) in
                (try ledger.watermark(), try ledger.knownOwners(), try ledger.firstSnapshotHourStart())
            }
        }
        guard let watermark else { return 0 }
        let stored = try await perform { [self] in try await hourlyThrough(connection) }
        let from = stored ?? first ?? watermark
        guard from < watermark else { return 0 }
        var written = 0
        for start in stride(from: 0, to: owners.count, by: Self.ownersPerTransaction) {
            let chunk = owners[start..<min(start + Self.ownersPerTransaction, owners.count)]
            written += try await perform { [self] in
                try await connection.withTransaction(logger: logger) { pg in
                    var count = 0
                    for owner in chunk { count += try await exportHours(of: owner, from: from, to: watermark, pg) }
                    return count
                }
            }
        }
        let cell = options.cell, through = watermark.rfc3339
        _ = try await perform { [self] in
            try await connection.query(
                """
                INSERT INTO usage_export_state VALUES (\(cell), \(through)::timestamptz)
                ON CONFLICT (cell) DO UPDATE SET hourly_through = EXCLUDED.hourly_through
                """, logger: logger)
        }
        return written
    }

    /// Upserts `owner`'s hours in [from, to), by resource, a week of hours per query.
    private func exportHours(of owner: String, from: Timestamp, to: Timestamp, _ pg: PostgresConnection) async throws
        -> Int
    {
        var written = 0
        var start = from
        while start < to {
            let end = min(to, Timestamp(microseconds: start.microseconds + Self.hoursPerQuery * 3_600_000_000))
            let report = try await ledger.async.usage(
                .owner(owner), from: start, to: end, granularity: .hour, groupByResource: true)
            var rows = HourColumns()
            for row in report.rows {
                guard let resource = row.resource else { continue }
                try rows.add(row, owner: owner, resource: resource)
            }
            written += try await upsert(rows, pg)
            start = end
        }
        return written
    }

    /// Exports until the feed is caught up, then the sealed hours. `shouldStop` is asked between batches.
    public func exportAll(
        shouldStop: () -> Bool = { false }, progress: (ExportSummary) -> Void = { _ in }
    ) async throws(ExportError) -> ExportSummary {
        var summary = ExportSummary()
        while !shouldStop() {
            let outcome = try await exportBatch()
            summary.events += outcome.written
            summary.hours += outcome.correctedHours
            if let gap = outcome.gap { summary.gaps.append(gap) }
            progress(summary)
            if outcome.caughtUp { break }
        }
        summary.hours += try await exportSealedHours()
        return summary
    }
}
