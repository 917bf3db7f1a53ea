/// The tables the exporter writes. Consumers write SQL against the first four, so their names and columns
/// are a contract (docs/export.md); `usage_export_state` is the exporter's own bookkeeping.
enum ExportSchema {
    /// Each table's name and its `CREATE TABLE`, in creation order.
    static let tables: [(String, String)] = [
        (
            "usage_events",
            """
            CREATE TABLE usage_events (
                cell text NOT NULL, seq bigint NOT NULL, id text NOT NULL, kind text NOT NULL,
                resource_type text NOT NULL, resource_id text NOT NULL, owner text NOT NULL,
                occurred_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL,
                footprint jsonb, deltas jsonb, reason text, attributes jsonb,
                PRIMARY KEY (cell, seq))
            """
        ),
        (
            "usage_cursors",
            "CREATE TABLE usage_cursors (cell text PRIMARY KEY, seq bigint NOT NULL, updated_at timestamptz NOT NULL)"
        ),
        (
            "usage_hourly",
            """
            CREATE TABLE usage_hourly (
                cell text NOT NULL, owner text NOT NULL, resource_type text NOT NULL, resource_id text NOT NULL,
                hour timestamptz NOT NULL, running_us bigint NOT NULL, meter_us jsonb NOT NULL,
                adjustments jsonb NOT NULL,
                PRIMARY KEY (cell, resource_type, resource_id, hour))
            """
        ),
        (
            "usage_gaps",
            """
            CREATE TABLE usage_gaps (
                cell text NOT NULL, after_seq bigint NOT NULL, through_seq bigint NOT NULL,
                detected_at timestamptz NOT NULL, UNIQUE (cell, through_seq))
            """
        ),
        (
            "usage_export_state",
            "CREATE TABLE usage_export_state (cell text PRIMARY KEY, hourly_through timestamptz NOT NULL)"
        ),
    ]

    /// Inserts a batch of events from one array per column; a row already there (same cell and seq) stays.
    static let insertEvents = """
        INSERT INTO usage_events (cell, seq, id, kind, resource_type, resource_id, owner, occurred_at, recorded_at,
            footprint, deltas, reason, attributes)
        SELECT $1, u.seq, u.id, u.kind, u.rt, u.rid, u.owner, u.occ::timestamptz, u.rec::timestamptz,
            NULLIF(u.fp, '')::jsonb, NULLIF(u.dl, '')::jsonb, CASE WHEN u.hr THEN u.reason END,
            NULLIF(u.at, '')::jsonb
        FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::text[], $11::text[], $12::text[], $13::bool[], $14::text[])
            AS u(seq, id, kind, rt, rid, owner, occ, rec, fp, dl, reason, hr, at)
        ON CONFLICT (cell, seq) DO NOTHING
        """

    /// Upserts hourly rows from one array per column.
    static let upsertHours = """
        INSERT INTO usage_hourly (cell, owner, resource_type, resource_id, hour, running_us, meter_us, adjustments)
        SELECT $1, u.owner, u.rt, u.rid, u.hour::timestamptz, u.run, u.m::jsonb, u.a::jsonb
        FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[])
            AS u(owner, rt, rid, hour, run, m, a)
        ON CONFLICT (cell, resource_type, resource_id, hour) DO UPDATE SET owner = EXCLUDED.owner,
            running_us = EXCLUDED.running_us, meter_us = EXCLUDED.meter_us, adjustments = EXCLUDED.adjustments
        """

    /// Deletes a resource's exported hours in [from, to) before they are written again.
    static let deleteHours = """
        DELETE FROM usage_hourly h USING unnest($2::text[], $3::text[], $4::text[]) AS u(rt, rid, from_hour)
        WHERE h.cell = $1 AND h.resource_type = u.rt AND h.resource_id = u.rid
            AND h.hour >= u.from_hour::timestamptz AND h.hour < $5::timestamptz
        """
}
