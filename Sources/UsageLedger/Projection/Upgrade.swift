import Logging
import LMDBStorage
import LedgerCore

extension Ledger {
    /// Upgrades an older on-disk format to the current one in one write transaction: killed at any moment,
    /// the ledger is still the old format (LMDB commits all or nothing) and the next open for writing
    /// starts again.
    ///
    /// Format 1 had the log only; 2 materialized rows on append; 3 in rollup; 4 added `owner_hourly`; 5
    /// stores steady hours as spans and sums in their smallest encoding; 6 stores events with their
    /// resource's number and interned meter names. The log is rewritten first, so that what follows reads
    /// format-6 records. Projections are derived from the log, so rebuilding them upgrades them; the rows
    /// before the compaction horizon are sealed (their events are gone) and are converted instead: whole
    /// steady hours become spans, the rest re-encoded. Format 5's projections are format 6's.
    func upgrade(from found: UInt32) throws(LedgerError) {
        let current = StorageFormat.currentVersion
        logger.notice("upgrading the on-disk format from \(found) to \(current)")
        let meta = schema.meta
        let (log, projections) = try write { txn -> (LogConversion, (RebuildSummary, SealedConversion)?) in
            let log = try self.internLogNames(in: txn)
            var projections: (RebuildSummary, SealedConversion)?
            if found < 5 {
                let floor = try self.firstSnapshotHour(in: txn)  // before the rows it reads become spans
                let converted = try self.convertSealedRows(in: txn)
                projections = (try self.rebuildProjections(in: txn, storedFloor: .some(floor)), converted)
            }
            try txn.put(Meta.formatVersion, current, in: meta)
            return (log, projections)
        }
        var metadata: Logger.Metadata = [
            "events_rewritten": "\(log.eventsRewritten)", "resources_named": "\(log.resourcesNamed)",
            "meters_interned": "\(log.metersInterned)",
        ]
        if let (summary, converted) = projections {
            metadata["resources"] = "\(summary.resources)"
            metadata["events"] = "\(summary.events)"
            metadata["hourly_rows"] = "\(summary.hourlyRows)"
            metadata["steady_spans"] = "\(summary.steadySpans)"
            metadata["sealed_rows_kept"] = "\(converted.rowsKept)"
            metadata["sealed_rows_to_spans"] = "\(converted.rowsToSpans)"
        }
        logger.notice("upgraded the on-disk format to \(current)", metadata: metadata)
    }

    /// Rewrites the log as format 6 stores it: every resource's name under its number in `resource_names`,
    /// and every version-1 event record as version 2, its resource and meters by number (meter names
    /// interned in the order the log first carries them). Version-2 records are left as they are.
    private func internLogNames(in txn: borrowing WriteTransaction) throws -> LogConversion {
        var conversion = LogConversion()
        var numbers: [ResourceID: ResourceEntry] = [:]
        for (number, resource, owner) in try allResources(in: txn) {
            try txn.put(schema.resourceNames, number, ResourceName(resource: resource, owner: owner))
            numbers[resource] = ResourceEntry(number: number, owner: owner)
            conversion.resourcesNamed += 1
        }
        var names = LogNames(schema: schema)
        let metersBefore = try txn.count(schema.meterNames.id)
        var after: UInt64 = 0
        while let batch = try version1Events(after: &after, in: txn) {
            for recorded in batch {
                let event = recorded.event
                guard let entry = numbers[event.resource], entry.owner == event.owner else {
                    throw LedgerError.corrupt(
                        reason: "event seq \(recorded.seq): \(event.resource) of \(event.owner) is not registered")
                }
                let fields = EventRecord.Fields(
                    event, recordedAt: recorded.recordedAt, resourceNumber: entry.number,
                    footprintNumbers: try names.numbers(of: event.footprint, interning: true, in: txn) ?? [],
                    deltaNumbers: try names.numbers(of: event.deltas, interning: true, in: txn) ?? [])
                try txn.put(
                    schema.events, recorded.seq,
                    EventRecord.record(payload: EventRecord.payload(of: fields), recordedAt: recorded.recordedAt))
                conversion.eventsRewritten += 1
            }
        }
        conversion.metersInterned = try txn.count(schema.meterNames.id) - metersBefore
        try reencodeEventIDs(in: txn)
        return conversion
    }

    /// Rewrites every `event_ids` value, a `seq` as 8 bytes big-endian before format 6, as a varint. A
    /// value of another length is already a varint (8 varint bytes would be a `seq` of 2^49 or more).
    private func reencodeEventIDs(in txn: borrowing WriteTransaction) throws {
        var after: [UInt8]? = nil
        while let batch = try fixedEventIDs(after: &after, in: txn) {
            for (key, seq) in batch { try txn.put(schema.eventIDs, encoded: EncodedKey(encodedBytes: key), seq) }
        }
    }

    /// The next fixed-width `event_ids` entries after the key `after` (of at most 10,000 read), moving
    /// `after` past them; nil at the end. The cursor is closed before the caller rewrites them.
    private func fixedEventIDs(after: inout [UInt8]?, in txn: borrowing WriteTransaction) throws
        -> [([UInt8], UInt64)]?
    {
        let cursor = try txn.cursor(Table<RawBytes, RawBytes>(schema.eventIDs.id))
        var entry: RawEntry?
        if let key = after {
            entry = try cursor.rawSeek(atLeastBytes: key)
            if let current = entry, current.key.elementsEqual(key) { entry = try cursor.rawNext() }
        } else {
            entry = try cursor.rawFirst()
        }
        guard entry != nil else { return nil }
        var batch: [([UInt8], UInt64)] = []
        var read = 0
        while let current = entry, read < 10_000 {
            read += 1
            after = Array(current.key)
            if current.value.count == 8 {
                batch.append((Array(current.key), UInt64(bigEndian: current.value.loadUnaligned(as: UInt64.self))))
            }
            entry = try cursor.rawNext()
        }
        return batch
    }

    /// The next version-1 records after `after` (at most 10,000, decoded), moving `after` past what was
    /// read; nil once the log is read to its end. The cursor is closed before the caller rewrites them.
    private func version1Events(after: inout UInt64, in txn: borrowing WriteTransaction) throws -> [RecordedEvent]? {
        let cursor = try txn.cursor(schema.events)
        var entry = after == .max ? nil : try cursor.rawSeek(atLeast: after + 1)
        guard entry != nil else { return nil }
        var batch: [RecordedEvent] = []
        while let current = entry, batch.count < 10_000 {
            let seq = try cursor.key(of: current)
            after = seq
            if current.value.first == EventRecord.version1 {
                batch.append(try EventRecord.decodeVersion1(current.value, seq: seq))
            }
            entry = try cursor.rawNext()
        }
        return batch
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

/// What the upgrade to format 6 did to the log.
struct LogConversion: Sendable {
    var eventsRewritten = 0
    var resourcesNamed = 0
    var metersInterned = 0
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
