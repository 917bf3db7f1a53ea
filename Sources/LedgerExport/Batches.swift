import LedgerCore
import Logging
import PostgresNIO
import UsageLedger

/// What one batch of the feed did.
public struct BatchOutcome: Sendable, Equatable {
    /// Events read from the feed.
    public var read = 0
    /// Events newly written (fewer than `read` when the table held some of them already, as after a cursor
    /// was reset by hand).
    public var written = 0
    /// Hourly rows written again because events of the batch corrected hours already exported.
    public var correctedHours = 0
    /// A pruned range this batch found and recorded.
    public var gap: ExportGap?
    /// Whether the feed has no more events after this batch.
    public var caughtUp = false
}

/// A page of the feed and its events as `COPY` rows.
struct PreparedPage: Sendable {
    let page: FeedPage
    let rows: [UInt8]

    static func read(after cursor: UInt64, limit: Int, of ledger: Ledger, cell: String) async throws -> PreparedPage {
        let page = try await ledger.async.events(after: cursor, limit: limit)
        var rows = EventCopyRows(capacity: page.events.count * 256)
        for recorded in page.events { rows.add(recorded, cell: cell) }
        return PreparedPage(page: page, rows: rows.bytes)
    }
}

extension PostgresExporter {
    /// Exports the next batch of the feed after the cell's cursor, in one PostgreSQL transaction with the
    /// cursor's advance: the events, a gap when the cursor predates pruned events, and (with hourly export)
    /// the exported hours the batch's late events corrected.
    public func exportBatch() async throws(ExportError) -> BatchOutcome {
        let cell = options.cell
        return try await perform { [self] in
            try await connection.withTransaction(logger: logger) { pg in
                try await pg.query(
                    "INSERT INTO usage_cursors VALUES (\(cell), 0, now()) ON CONFLICT (cell) DO NOTHING",
                    logger: logger)
                // The row lock also keeps a second exporter of the cell out until this batch commits.
                let rows = try await pg.query(
                    "SELECT seq FROM usage_cursors WHERE cell = \(cell) FOR UPDATE", logger: logger)
                var cursor: Int64 = 0
                for try await seq in rows.decode(Int64.self) { cursor = seq }
                let prepared = try await nextPage(after: UInt64(cursor))
                let page = prepared.page
                var outcome = BatchOutcome(read: page.events.count, caughtUp: page.events.count < options.batchSize)
                if let pruned = page.pruned {
                    outcome.gap = try await recordGap(after: cursor, through: pruned.throughSeq, pg)
                }
                outcome.written = try await insertEvents(page.events, rows: prepared.rows, pg)
                if options.exportsHourly { outcome.correctedHours = try await correctHours(for: page.events, pg) }
                let next = Int64(page.nextCursor)
                try await pg.query(
                    "UPDATE usage_cursors SET seq = \(next), updated_at = now() WHERE cell = \(cell)", logger: logger)
                return outcome
            }
        }
    }

    /// Records the pruned range once per cell and range; returns it when this call recorded it.
    private func recordGap(after cursor: Int64, through: UInt64, _ pg: PostgresConnection) async throws -> ExportGap? {
        let cell = options.cell, throughSeq = Int64(through)
        let rows = try await pg.query(
            """
            INSERT INTO usage_gaps VALUES (\(cell), \(cursor), \(throughSeq), now())
            ON CONFLICT (cell, through_seq) DO NOTHING RETURNING after_seq
            """, logger: logger)
        var recorded = false
        for try await _ in rows.decode(Int64.self) { recorded = true }
        return recorded ? ExportGap(afterSeq: UInt64(cursor), throughSeq: through) : nil
    }

    /// Writes `events`; returns how many were new. They are streamed with `COPY` (a quarter of the server's
    /// work of an `INSERT` from arrays), unless the table holds some of them already: then one `INSERT`
    /// keeps those. The cursor's row lock keeps other exporters of the cell out between check and write.
    private func insertEvents(_ events: [RecordedEvent], rows: [UInt8], _ pg: PostgresConnection) async throws
        -> Int
    {
        guard let first = events.first, let last = events.last else { return 0 }
        let cell = options.cell, from = Int64(first.seq), through = Int64(last.seq)
        let present = try await pg.query(
            "SELECT EXISTS (SELECT 1 FROM usage_events WHERE cell = \(cell) AND seq BETWEEN \(from) AND \(through))",
            logger: logger)
        var exists = false
        for try await found in present.decode(Bool.self) { exists = found }
        guard exists else {
            let buffer = ByteBuffer(bytes: rows)
            try await pg.copyFrom(table: "usage_events", columns: EventCopyRows.columns, logger: logger) { writer in
                try await writer.write(buffer)
            }
            return events.count
        }
        var columns = EventColumns()
        for recorded in events { columns.add(recorded) }
        var binds = PostgresBindings(capacity: 14)
        binds.append(options.cell)
        columns.bind(into: &binds)
        let sql = "WITH inserted AS (\(ExportSchema.insertEvents) RETURNING 1) SELECT count(*)::bigint FROM inserted"
        let rows = try await pg.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
        var written: Int64 = 0
        for try await count in rows.decode(Int64.self) { written = count }
        return Int(written)
    }

    /// The feed's page after `cursor` with its `COPY` rows: the one read ahead while the previous batch was
    /// written, when it starts there, else read now. A full page starts reading the next one, so that the
    /// ledger's reads and the rows' formatting overlap PostgreSQL's work. (A page read ahead is a
    /// consistent snapshot of its time: events appended since are in a later page, and a prune since
    /// finds the cursor in a later batch.)
    private func nextPage(after cursor: UInt64) async throws -> PreparedPage {
        let ahead = readAhead.withLock { slot -> ReadAhead? in
            defer { slot = nil }
            return slot
        }
        let prepared: PreparedPage
        if let ahead, ahead.after == cursor {
            prepared = try await ahead.page.value
        } else {
            ahead?.page.cancel()
            prepared = try await PreparedPage.read(
                after: cursor, limit: options.batchSize, of: ledger, cell: options.cell)
        }
        if prepared.page.events.count == options.batchSize {
            let ledger = ledger, next = prepared.page.nextCursor, limit = options.batchSize, cell = options.cell
            let task = Task { try await PreparedPage.read(after: next, limit: limit, of: ledger, cell: cell) }
            readAhead.withLock { $0 = ReadAhead(after: next, page: task) }
        }
        return prepared
    }

    /// Writes again the exported hours that `events` changed: for each resource with an event before the
    /// hours exported so far, its hours from that event's hour on (deleted first: a late stop can empty one).
    private func correctHours(for events: [RecordedEvent], _ pg: PostgresConnection) async throws -> Int {
        guard let through = try await hourlyThrough(pg) else { return 0 }
        var earliest: [ResourceID: (owner: String, hour: Timestamp)] = [:]
        for recorded in events where recorded.event.occurredAt < through {
            let hour = recorded.event.occurredAt.hourFloor
            let resource = recorded.event.resource
            if let known = earliest[resource], known.hour <= hour { continue }
            earliest[resource] = (recorded.event.owner, hour)
        }
        guard !earliest.isEmpty else { return 0 }
        let resources = earliest.sorted { $0.key < $1.key }
        var binds = PostgresBindings(capacity: 5)
        binds.append(options.cell)
        binds.append(resources.map(\.key.type))
        binds.append(resources.map(\.key.id))
        binds.append(resources.map(\.value.hour.rfc3339))
        binds.append(through.rfc3339)
        try await pg.query(PostgresQuery(unsafeSQL: ExportSchema.deleteHours, binds: binds), logger: logger)
        var rows = HourColumns()
        for (resource, first) in resources {
            let report = try await ledger.async.usage(
                .resource(resource), from: first.hour, to: through, granularity: .hour)
            for row in report.rows { try rows.add(row, owner: first.owner, resource: resource) }
        }
        return try await upsert(rows, pg)
    }

    /// The end of the hours exported so far, or nil before the first.
    func hourlyThrough(_ pg: PostgresConnection) async throws -> Timestamp? {
        let rows = try await pg.query(
            """
            SELECT (extract(epoch FROM hourly_through) * 1000000)::bigint FROM usage_export_state
            WHERE cell = \(options.cell)
            """, logger: logger)
        var through: Timestamp?
        for try await micros in rows.decode(Int64.self) { through = Timestamp(microseconds: micros) }
        return through
    }

    /// Upserts hourly rows, at most 10,000 per statement; returns how many.
    func upsert(_ rows: HourColumns, _ pg: PostgresConnection) async throws -> Int {
        for chunk in rows.chunks(of: 10_000) {
            var binds = PostgresBindings(capacity: 8)
            binds.append(options.cell)
            chunk.bind(into: &binds)
            try await pg.query(PostgresQuery(unsafeSQL: ExportSchema.upsertHours, binds: binds), logger: logger)
        }
        return rows.count
    }
}
