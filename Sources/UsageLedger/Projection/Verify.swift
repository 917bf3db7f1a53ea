import LMDBStorage
import LedgerCore

/// What `verify` found.
public struct VerifyReport: Sendable, Equatable {
    /// Pages of the data file whose structure was checked.
    public var pagesChecked: Int
    /// Resources whose timeline was replayed.
    public var resourcesChecked: Int
    /// Events replayed.
    public var eventsReplayed: Int
    /// How many stored projection entries differ from the log's replay.
    public var differenceCount: Int
    /// The first differences, for a person.
    public var differences: [String]
    /// Whether the projections match the log exactly.
    public var isConsistent: Bool { differenceCount == 0 }

    /// Counts one difference, and keeps its text while fewer than `limit` are kept.
    mutating func differ(_ text: String, limit: Int) {
        differenceCount += 1
        if differences.count < limit { differences.append(text) }
    }
}

/// What the log's replay says the projections must hold, gathered resource by resource.
private struct ReplayExpectations {
    var running: [OwnedResource: UInt64] = [:]
    var pending: [OwnedResource: UInt64] = [:]
    var totals: [OwnerType: ProjectionFormat.OwnerTotals] = [:]
    var unmatchedStops: UInt64 = 0
    /// Stored `hourly` rows (at or after the horizon) that the replay also gave.
    var matchedRows = 0
    /// Stored `steady` spans (reaching past the horizon) of registered resources: each was compared.
    var comparedSpans = 0
}

/// The instants that bound what verify replays.
private struct VerifyBounds {
    /// Rows before the compaction horizon are sealed: their events are gone.
    var horizon: Timestamp
    /// No checkpoint may lie beyond the rollup watermark (or the target of a rollup under way).
    var checkpointLimit: Timestamp
}

extension Ledger {
    /// The order in which verify checks the tables (the order its differences are reported in).
    private static let verificationOrder = [
        Schema.resourceState, Schema.compactionBase, Schema.resources, Schema.hourly, Schema.ownerHourly,
        Schema.running, Schema.pending, Schema.ownerTotals, Schema.meta, Schema.events, Schema.eventIDs,
        Schema.timeline, Schema.steady, Schema.resourceNames, Schema.meterNames, Schema.meterNumbers,
    ]

    /// Checks the data file's structure page by page, then replays every resource's timeline and compares
    /// the result with the stored projections and the log's indexes.
    ///
    /// A damaged page structure throws `LedgerError.corrupt` naming the page before LMDB reads it (LMDB
    /// has no checksums and could crash on it); damaged records throw `corrupt` through their CRC-32;
    /// projections or indexes that disagree with the log are returned as differences.
    public func verify(maximumDifferences: Int = 20) throws(LedgerError) -> VerifyReport {
        let structure: StructureReport
        do { structure = try environment.checkStructure() } catch { throw Self.map(error, path: path) }
        var report = try read { txn in try verifyContents(maximumDifferences: maximumDifferences, in: txn) }
        report.pagesChecked = structure.pages
        return report
    }

    /// Replays the log, then checks every table of the schema against it.
    private func verifyContents(maximumDifferences limit: Int, in txn: borrowing ReadTransaction) throws -> VerifyReport
    {
        let meta = schema.meta
        let bounds = VerifyBounds(
            horizon: try txn.get(Meta.horizon, in: meta) ?? .earliest,
            checkpointLimit: max(
                try txn.get(Meta.watermark, in: meta) ?? .earliest,
                try txn.get(Meta.rollupTarget, in: meta) ?? .earliest))
        var report = VerifyReport(
            pagesChecked: 0, resourcesChecked: 0, eventsReplayed: 0, differenceCount: 0, differences: [])
        let expected = try replay(bounds, into: &report, limit: limit, in: txn)
        func differ(_ text: String) { report.differ(text, limit: limit) }
        // Every table of the schema is checked: one the order omits is a gap in verify, not in the ledger.
        guard Set(Self.verificationOrder) == Set(Schema.declarations) else {
            throw LedgerError.invalidArgument(reason: "verify does not check every table of the schema")
        }
        for declaration in Self.verificationOrder {
            switch declaration {
            case Schema.resourceState, Schema.compactionBase, Schema.resources, Schema.ownerHourly,
                Schema.eventIDs, Schema.timeline:
                break  // compared in the replay, with the rows, or with the events
            case Schema.steady:
                try verifySpanCount(expected, bounds, in: txn, differ: differ)
            case Schema.hourly:
                try verifyRows(expected, bounds, into: &report, limit: limit, in: txn)
            case Schema.running:
                try verifyIndex(schema.running, "running", expected.running, in: txn, differ: differ)
            case Schema.pending:
                try verifyIndex(schema.pending, "pending", expected.pending, in: txn, differ: differ)
            case Schema.ownerTotals:
                if try storedTotals(in: txn) != expected.totals {
                    differ("owner totals: stored totals differ from the sums of running resources' footprints")
                }
            case Schema.meta:
                let storedUnmatched = try txn.get(Meta.unmatchedStops, in: meta) ?? 0
                if storedUnmatched != expected.unmatchedStops {
                    differ("unmatched stops: \(storedUnmatched) counted, the log gives \(expected.unmatchedStops)")
                }
            case Schema.events:
                try verifyLogIndexes(in: txn, timelineEntries: report.eventsReplayed, differ: differ)
            case Schema.resourceNames:
                let resources = try txn.count(schema.resources.id), named = try txn.count(schema.resourceNames.id)
                if named != resources { differ("resource_names holds \(named) entries for \(resources) resources") }
            case Schema.meterNames, Schema.meterNumbers:
                if declaration == Schema.meterNames { try verifyMeterNames(in: txn, differ: differ) }
            default:
                throw LedgerError.invalidArgument(reason: "verify has no check for the table '\(declaration.name)'")
            }
        }
        return report
    }

    /// Replays every resource's timeline, compares its stored state and rows, and gathers what the indexes
    /// and totals must hold. Rows are checked one resource at a time by point lookups, so memory stays
    /// bounded by one resource's rows.
    private func replay(
        _ bounds: VerifyBounds, into report: inout VerifyReport, limit: Int,
        in txn: borrowing ReadTransaction
    ) throws -> ReplayExpectations {
        var expected = ReplayExpectations()
        for (number, resource, owner) in try allResources(in: txn) {
            let entries = try checkedTimeline(
                number, of: resource, owner: owner, into: &report, limit: limit, in: txn)
            report.resourcesChecked += 1
            report.eventsReplayed += entries.count
            guard let stored = try txn.get(schema.resourceState, number) else {
                report.differ("\(resource): no current state stored", limit: limit)
                continue
            }
            // Rollup (to its target) and compaction (to the horizon, never past the watermark) are the
            // only writers of a checkpoint; one beyond them is damage, and replaying to it could take forever.
            guard stored.accruedUntil <= bounds.checkpointLimit else {
                report.differ(
                    "\(resource): its checkpoint \(stored.accruedUntil) lies beyond the rollup "
                        + "watermark \(bounds.checkpointLimit)",
                    limit: limit)
                continue
            }
            // Rows must hold exactly the log's usage before the resource's own checkpoint.
            let (state, materialized) = try expectedProjection(
                entries, resource: resource, owner: owner,
                base: try compactionBase(resourceNumber: number, in: txn),
                materializeUntil: stored.accruedUntil, rowsFrom: bounds.horizon)
            if stored != state {
                report.differ(
                    "\(resource): stored state \(describe(stored)) differs from the log's \(describe(state))",
                    limit: limit)
            }
            if entries.contains(where: { $0.occurredAt >= stored.accruedUntil }) {
                expected.pending[OwnedResource(owner: owner, resource: resource)] = number
            }
            expected.matchedRows += try compareRows(materialized.rows, of: state, into: &report, limit: limit, in: txn)
            expected.comparedSpans += try compareSpans(
                materialized.spans, of: state, from: bounds.horizon, into: &report, limit: limit, in: txn)
            if state.running {
                expected.running[OwnedResource(owner: state.owner, resource: state.resource)] = number
                try expected.totals[OwnerType(owner: state.owner, type: state.resource.type), default: .init()]
                    .add(state.footprint, sign: 1)
            }
            expected.unmatchedStops += state.unmatchedStops
        }
        return expected
    }

    /// Compares one resource's expected rows with the stored ones; returns how many are stored.
    private func compareRows(
        _ rows: [Int64: UsageAmounts], of state: ResourceState, into report: inout VerifyReport,
        limit: Int, in txn: borrowing ReadTransaction
    ) throws -> Int {
        var matched = 0
        for (hour, amounts) in rows.sorted(by: { $0.key < $1.key }) {
            let key = HourlyKey(hour: hour, owner: state.owner, resource: state.resource)
            let stored = try txn.rawGet(schema.hourly, key)
            if stored != nil { matched += 1 }
            // Rows are encoded canonically (names sorted), so equal bytes are equal rows; decode only to
            // compare (and describe) the rest.
            if let stored, ProjectionFormat.encode(amounts).withUnsafeBytes({ $0.elementsEqual(stored) }) { continue }
            let found = try stored.map { try UsageAmountsCodec.decode($0) }
            if found != amounts {
                report.differ(
                    "\(state.resource) hour \(Timestamp(microseconds: hour)): "
                        + "stored \(found.map(describe) ?? "nothing"), the log gives \(describe(amounts))",
                    limit: limit)
            }
        }
        return matched
    }

    /// Compares one resource's expected spans with the stored ones (the parts at or after the horizon:
    /// before it, hours are sealed); returns how many stored spans reach past the horizon.
    private func compareSpans(
        _ spans: [SteadySpan], of state: ResourceState, from horizon: Timestamp, into report: inout VerifyReport,
        limit: Int, in txn: borrowing ReadTransaction
    ) throws -> Int {
        // Compared as bytes first (most resources match); decoded only to describe a difference.
        let prefix = SteadySpanKeyCodec.prefix(owner: state.owner, resource: state.resource)
        var raw: [(start: Int64, end: Int64, footprint: [UInt8])] = []
        let cursor = try txn.cursor(schema.steady)
        var entry = try cursor.rawSeek(atLeastBytes: prefix)
        while let current = entry, current.key.hasPrefix(prefix) {
            let span = try SteadySpan.parse(key: current.key, value: current.value)
            let end = span.start + span.hours * Timestamp.microsecondsPerHour
            if end > horizon.microseconds {
                raw.append((max(span.start, horizon.microseconds), end, Array(span.footprint)))
            }
            entry = try cursor.rawNext()
        }
        if raw.count == spans.count,
            zip(raw, spans).allSatisfy({ stored, expected in
                stored.start == expected.start && stored.end == expected.end
                    && stored.footprint == SteadySpan.encodedFootprint(expected.footprint)
            })
        {
            return raw.count
        }
        let stored = try storedSpans(owner: state.owner, resource: state.resource, in: txn).compactMap {
            $0.clipped(from: horizon.microseconds, until: Int64.max)
        }
        guard stored != spans else { return stored.count }  // equal meters in another byte order
        func text(_ spans: [SteadySpan]) -> String {
            spans.isEmpty
                ? "none"
                : spans.map { "\(Timestamp(microseconds: $0.start)) to \(Timestamp(microseconds: $0.end))" }
                    .joined(separator: ", ")
        }
        report.differ(
            "\(state.resource) steady hours: stored \(text(stored)), the log gives \(text(spans))", limit: limit)
        return stored.count
    }

    /// Checks that every stored span reaching past the horizon belongs to a resource the replay compared.
    private func verifySpanCount(
        _ expected: ReplayExpectations, _ bounds: VerifyBounds, in txn: borrowing ReadTransaction,
        differ: (String) -> Void
    ) throws {
        var count = 0
        let cursor = try txn.cursor(schema.steady)
        var entry = try cursor.rawFirst()
        while let current = entry {
            let span = try SteadySpan.parse(key: current.key, value: current.value)
            if span.start + span.hours * Timestamp.microsecondsPerHour > bounds.horizon.microseconds { count += 1 }
            entry = try cursor.rawNext()
        }
        if count != expected.comparedSpans {
            differ(
                "steady: \(count) spans are stored after the horizon, \(expected.comparedSpans) belong to "
                    + "registered resources")
        }
    }

    /// Checks that every stored row (of an hour at or after the horizon; earlier hours are sealed) is one the
    /// replay gave, and `owner_hourly` against the rows. Counts them in the pass that checks owner_hourly;
    /// only if there are more than the replay matched, finds the extra ones.
    private func verifyRows(
        _ expected: ReplayExpectations, _ bounds: VerifyBounds, into report: inout VerifyReport,
        limit: Int, in txn: borrowing ReadTransaction
    ) throws {
        var horizonKey = ByteWriter(capacity: 8)
        horizonKey.writeOrdered(bounds.horizon.microseconds)
        var ownerDifferences = VerifyReport(
            pagesChecked: 0, resourcesChecked: 0, eventsReplayed: 0, differenceCount: 0, differences: [])
        try verifyOwnerRows(until: bounds.checkpointLimit, in: txn) { ownerDifferences.differ($0, limit: limit) }
        var storedCount = 0
        let counter = try txn.cursor(schema.hourly)
        var counted = try counter.rawSeek(atLeastBytes: horizonKey.bytes)
        while counted != nil {
            storedCount += 1
            counted = try counter.rawNext()
        }
        for text in ownerDifferences.differences { report.differ(text, limit: limit) }
        report.differenceCount += ownerDifferences.differenceCount - ownerDifferences.differences.count
        guard storedCount != expected.matchedRows else { return }
        let rows = try txn.cursor(schema.hourly)
        let extra = storedCount - expected.matchedRows
        var located = 0
        var row = try rows.rawSeek(atLeastBytes: horizonKey.bytes)
        var expectedHours: [ResourceID: Set<Int64>] = [:]
        while let current = row, report.differences.count < limit, located < extra {
            let parts = try rows.key(of: current)
            if expectedHours[parts.resource] == nil {
                expectedHours[parts.resource] = try expectedHourSet(parts.resource, bounds, in: txn)
            }
            if expectedHours[parts.resource]?.contains(parts.hour) != true {
                located += 1
                report.differ(
                    "\(parts.resource) hour \(Timestamp(microseconds: parts.hour)): a row is stored that the log "
                        + "does not give",
                    limit: limit)
            }
            row = try rows.rawNext()
        }
        report.differenceCount += extra - located
    }

    /// Compares the entries of `running` or `pending` with what the replay gave.
    private func verifyIndex(
        _ table: Table<OwnedResourceKeyCodec, BigEndianUInt64>, _ name: String, _ expected: [OwnedResource: UInt64],
        in txn: borrowing ReadTransaction, differ: (String) -> Void
    ) throws {
        let stored = try storedIndex(table, in: txn)
        if stored != expected {
            differ(
                "\(name) index: \(stored.count) entries stored, the log gives \(expected.count) (or they name "
                    + "other resources)")
        }
    }

    /// The entries of `running` or `pending`.
    private func storedIndex(
        _ table: Table<OwnedResourceKeyCodec, BigEndianUInt64>,
        in txn: borrowing ReadTransaction
    ) throws -> [OwnedResource: UInt64] {
        var stored: [OwnedResource: UInt64] = [:]
        let cursor = try txn.cursor(table)
        var entry = try cursor.first()
        while let current = entry {
            stored[current.key] = current.value
            entry = try cursor.next()
        }
        return stored
    }

    /// The entries of `owner_totals`.
    private func storedTotals(in txn: borrowing ReadTransaction) throws -> [OwnerType: ProjectionFormat.OwnerTotals] {
        var stored: [OwnerType: ProjectionFormat.OwnerTotals] = [:]
        let cursor = try txn.cursor(schema.ownerTotals)
        var entry = try cursor.first()
        while let current = entry {
            stored[current.key] = current.value
            entry = try cursor.next()
        }
        return stored
    }

    /// A resource's timeline, read as the fold reads it, with the log's indexes checked on the way: each
    /// entry's event exists, decodes (CRC-32), is this resource's at the entry's time, and its id maps to
    /// it. With the counts `verifyLogIndexes` compares, this covers every event once, decoded once.
    private func checkedTimeline(
        _ number: UInt64, of resource: ResourceID, owner: String, into report: inout VerifyReport, limit: Int,
        in txn: borrowing ReadTransaction
    ) throws -> [TimelineEntry] {
        let named = try txn.get(schema.resourceNames, number)
        guard named == ResourceName(resource: resource, owner: owner) else {
            report.differ(
                "resource_names: number \(number) names \(named.map { "\($0.resource) of \($0.owner)" } ?? "nothing"), "
                    + "resources gives \(resource) of \(owner)",
                limit: limit)
            return []
        }
        let prefix = TimelineKeyCodec.prefix(resource: number)
        var entries: [TimelineEntry] = []
        var names = LogNames(schema: schema)
        let cursor = try txn.cursor(schema.timeline)
        var entry = try cursor.rawSeek(atLeastBytes: prefix)
        while let current = entry, current.key.hasPrefix(prefix) {
            let key = try cursor.key(of: current)
            entry = try cursor.rawNext()
            guard let record = try txn.rawGet(schema.events, key.seq) else {
                report.differ("the timeline of \(resource) names seq \(key.seq), which is missing", limit: limit)
                continue
            }
            let event = try EventRecord.decode(record, seq: key.seq, names: &names, in: txn).event
            if event.resource != resource || event.occurredAt != key.occurredAt {
                report.differ(
                    "event seq \(key.seq): filed in the timeline of \(resource) at \(key.occurredAt), but it is of "
                        + "\(event.resource) at \(event.occurredAt)",
                    limit: limit)
            }
            let mapped = try txn.get(schema.eventIDs, event.id)
            if mapped != key.seq {
                report.differ(
                    "event seq \(key.seq): its id '\(event.id)' maps to \(mapped.map { "seq \($0)" } ?? "nothing")",
                    limit: limit)
            }
            entries.append(TimelineEntry(seq: key.seq, event: event))
        }
        return entries
    }

    /// Checks the log's own indexes by their counts (each entry was checked in the replay): as many events,
    /// ids and timeline entries, all reachable from registered resources. A damaged `event_ids` entry would
    /// otherwise make a retry count twice without any projection noticing.
    private func verifyLogIndexes(in txn: borrowing ReadTransaction, timelineEntries: Int, differ: (String) -> Void)
        throws
    {
        let counters = try LogCounters(reading: txn, meta: schema.meta)
        let events = try txn.cursor(schema.events)
        if let last = try events.rawLast(), try events.key(of: last) >= counters.nextSeq {
            differ("next_seq \(counters.nextSeq) is not past the last recorded event: a new event would overwrite one")
        }
        let count = try txn.count(schema.events.id)
        let ids = try txn.count(schema.eventIDs.id)
        if ids != count { differ("event_ids holds \(ids) entries for \(count) events") }
        let timeline = try txn.count(schema.timeline.id)
        if timeline != count || timelineEntries != count {
            differ(
                "the timelines hold \(timeline) entries (\(timelineEntries) reachable from registered resources) "
                    + "for \(count) events"
            )
        }
    }

    /// Checks the interned meter names: `meter_names` and `meter_numbers` are each other's inverse, and
    /// every number is below `next_meter_number` (so none is handed out twice). Each record's numbers are
    /// checked when the replay decodes it.
    private func verifyMeterNames(in txn: borrowing ReadTransaction, differ: (String) -> Void) throws {
        let next = try txn.get(Meta.nextMeterNumber, in: schema.meta) ?? 1
        var count = 0
        let cursor = try txn.cursor(schema.meterNames)
        var entry = try cursor.first()
        while let current = entry {
            count += 1
            if current.key >= next {
                differ("meter_names: number \(current.key) is not below next_meter_number \(next)")
            }
            let back = try txn.get(schema.meterNumbers, current.value)
            if back != current.key {
                differ(
                    "meter_names: \(current.key) names '\(current.value)', which meter_numbers maps to "
                        + (back.map { "\($0)" } ?? "nothing"))
            }
            entry = try cursor.next()
        }
        let numbers = try txn.count(schema.meterNumbers.id)
        if numbers != count { differ("meter_numbers holds \(numbers) entries for \(count) in meter_names") }
    }

    /// Checks that `owner_hourly` holds, for every owner-hour (sealed hours included), exactly the sum of the
    /// stored `hourly` rows and `steady` spans: one merge of two streams in the same key order.
    private func verifyOwnerRows(
        until checkpointLimit: Timestamp, in txn: borrowing ReadTransaction, differ: (String) -> Void
    ) throws {
        let owners = try txn.cursor(schema.ownerHourly)
        var stored = try owners.rawFirst()
        // Swept over the hours the snapshots hold, no further than the watermark: a damaged span (or
        // watermark) could claim millennia. Every steady hour has its owner sum, so no span lies outside.
        let floor = try firstSnapshotHour(in: txn) ?? checkpointLimit.microseconds
        let last = try txn.cursor(schema.ownerHourly).rawLast().flatMap { ProjectionFormat.hour(ofHourlyKey: $0.key) }
        let lastHour = last ?? floor
        let until = min(
            checkpointLimit.microseconds,
            lastHour < Int64.max - Timestamp.microsecondsPerHour ? lastHour + Timestamp.microsecondsPerHour : lastHour)
        let expectedRows = try StoredOwnerRows(from: floor, until: max(floor, until), ledger: self, in: txn)
        if expectedRows.spansOutside > 0 {
            differ(
                "steady: \(expectedRows.spansOutside) spans reach outside the hours the snapshots hold "
                    + "(\(Timestamp(microseconds: floor)) to the watermark \(checkpointLimit))")
        }
        try expectedRows.forEach(ledger: self, in: txn) { key, expected in
            while let current = stored, current.key.lexicographicallyPrecedes(key) {
                differ(
                    "owner_hourly \(OwnerRow.describe(key: current.key)): an entry is stored that no hourly rows give")
                stored = try owners.rawNext()
            }
            if let current = stored, current.key.elementsEqual(key) {
                let found = try owners.value(of: current)
                if found != expected {
                    differ(
                        "owner_hourly \(OwnerRow.describe(key: key)): stored \(describe(found.amounts)) "
                            + "over \(found.rows) rows, the rows give \(describe(expected.amounts)) "
                            + "over \(expected.rows)"
                    )
                }
                stored = try owners.rawNext()
            } else {
                differ(
                    "owner_hourly \(OwnerRow.describe(key: key)): missing, the rows give \(describe(expected.amounts))")
            }
        }
        while let current = stored {
            differ("owner_hourly \(OwnerRow.describe(key: current.key)): an entry is stored that no hourly rows give")
            stored = try owners.rawNext()
        }
    }

    /// The hours for which the log gives `resource` a row (used only to locate unexpected stored rows).
    private func expectedHourSet(_ resource: ResourceID, _ bounds: VerifyBounds, in txn: borrowing ReadTransaction)
        throws -> Set<Int64>
    {
        guard let entry = try txn.get(schema.resources, resource) else { return [] }
        let entries = try timeline(resourceNumber: entry.number, in: txn)
        let base = try compactionBase(resourceNumber: entry.number, in: txn)
        let stored = try txn.get(schema.resourceState, entry.number)
        let until = min(stored?.accruedUntil ?? .earliest, bounds.checkpointLimit)
        let (_, materialized) = try expectedProjection(
            entries, resource: resource, owner: entry.owner, base: base,
            materializeUntil: until, rowsFrom: bounds.horizon)
        return Set(materialized.rows.keys)
    }

    private func describe(_ state: ResourceState) -> String {
        let meters = state.footprint.map { "\($0.name)=\($0.value)" }.joined(separator: ",")
        let running =
            state.running ? "running since \(state.runStartedAt.map(\.rfc3339) ?? "?") with \(meters)" : "stopped"
        return
            "(\(running), unmatched stops \(state.unmatchedStops), rows to \(state.accruedUntil) where "
            + "it \(state.checkpointRunning ? "ran" : "did not run"))"
    }

    private func describe(_ amounts: UsageAmounts) -> String {
        var parts = ["running_seconds=\(ExactDecimal.seconds(fromMicroseconds: amounts.runningMicroseconds))"]
        for name in amounts.meterMicroseconds.keys.sorted() {
            parts.append(
                "\(name)_seconds=\(ExactDecimal.seconds(fromMicroseconds: amounts.meterMicroseconds[name] ?? 0))")
        }
        for name in amounts.adjustments.keys.sorted() { parts.append("\(name)=\(amounts.adjustments[name] ?? 0)") }
        return parts.joined(separator: " ")
    }
}
