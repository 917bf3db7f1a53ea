import LMDBStorage
import LedgerCore

/// What one `rollUp` did.
public struct RollupSummary: Sendable, Equatable {
    /// Hours before this instant are materialized for every resource.
    public var watermark: Timestamp
    /// The watermark before this rollup.
    public var previousWatermark: Timestamp?
    /// Running resources whose open run was materialized.
    public var resourcesRolled: Int
    /// Resource-hours written.
    public var resourceHours: Int
}

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
}

/// What `rebuild` did.
public struct RebuildSummary: Sendable, Equatable {
    /// Resources folded.
    public var resources: Int
    /// Events replayed.
    public var events: Int
    /// Hourly rows written.
    public var hourlyRows: Int
}

extension Ledger {
    /// The default grace before an hour is rolled up: 5 minutes, for events that arrive a little late.
    public static let defaultRollupGraceMicroseconds: Int64 = 5 * 60 * 1_000_000

    /// Materializes every running resource's usage into hourly rows up to the watermark
    /// `floor_to_hour(now - grace)`. Idempotent: a second run, or a run after one interrupted half-way,
    /// gives the same rows. Runs in transactions of at most `batchSize` resources and about 20,000 rows, so
    /// appends are not held up for long.
    public func rollUp(now: Timestamp? = nil, graceMicroseconds: Int64 = Ledger.defaultRollupGraceMicroseconds,
                       batchSize: Int = 1000) throws(LedgerError) -> RollupSummary {
        let summary = try rollUp(now: now, graceMicroseconds: graceMicroseconds, batchSize: batchSize, stopAfterBatches: nil)
        metrics.resourceHours.increment(by: summary.resourceHours)
        metrics.recordLag(now: now ?? options.clock.now(), watermark: summary.watermark)
        metrics.recordMap(environment.statistics())
        if summary.watermark != summary.previousWatermark {
            logger.info("rolled up to \(summary.watermark)", metadata: [
                "resources": "\(summary.resourcesRolled)", "resource_hours": "\(summary.resourceHours)",
                "previous_watermark": "\(summary.previousWatermark?.rfc3339 ?? "none")",
            ])
        }
        return summary
    }

    /// Hourly rows one rollup transaction writes before it commits and lets appenders in (it finishes
    /// the resource it is on, so one resource with more rows than this is still one transaction).
    static let rollupRowsPerTransaction = 20_000

    /// `rollUp`, optionally stopping after some batches as a crash would (for tests).
    func rollUp(now: Timestamp?, graceMicroseconds: Int64, batchSize: Int, stopAfterBatches: Int?) throws(LedgerError) -> RollupSummary {
        guard batchSize > 0 else { throw .invalidArgument(reason: "batch size must be positive") }
        let clock = now ?? options.clock.now()
        let wanted = Timestamp(microseconds: clock.microseconds - graceMicroseconds).hourFloor
        let meta = databases.meta
        let (previous, target) = try write { txn -> (Timestamp?, Timestamp) in
            let previous = try ProjectionMeta.timestamp(txn, meta, ProjectionMeta.watermark)
            let pending = try ProjectionMeta.timestamp(txn, meta, ProjectionMeta.rollupTarget)
            let target = max(wanted, pending ?? .earliest, previous ?? .earliest)
            if target > (previous ?? .earliest) { try ProjectionMeta.put(txn, meta, ProjectionMeta.rollupTarget, target) }
            return (previous, target)
        }
        var summary = RollupSummary(watermark: target, previousWatermark: previous, resourcesRolled: 0, resourceHours: 0)
        guard target > (previous ?? .earliest) else { return summary }
        // Every resource whose rows may lag: running ones and those with events after their checkpoint.
        var batches = 0
        for index in [databases.running, databases.pending] {
            var resumeAfter: [UInt8]? = nil
            while true {
                if let stopAfterBatches, batches >= stopAfterBatches { return summary }
                let (lastKey, rolled, hours) = try write { txn -> ([UInt8]?, Int, Int) in
                    // Collect the batch first: materializing deletes `pending` entries under the cursor.
                    var batch: [([UInt8], UInt64)] = []
                    let cursor = try txn.cursor(index)
                    var entry = try resumeAfter.map { key in try cursor.seek(atLeast: key + [0]) } ?? cursor.first()
                    while let current = entry, batch.count < batchSize {
                        batch.append((Array(current.key), try StorageFormat.decodeNumber(current.value, what: "an index entry")))
                        entry = try cursor.next()
                    }
                    var rolled = 0, hours = 0
                    var last: [UInt8]? = nil
                    var ownerRows = OwnerRowChanges()
                    for (key, number) in batch {
                        // Bound the transaction by work, not only by resources: appenders wait for it.
                        if hours >= Self.rollupRowsPerTransaction { break }
                        last = key
                        let stateKey = BigEndianKey(number)
                        guard let stored = try txn.get(databases.resourceState, stateKey) else {
                            throw LedgerError.corrupt(reason: "indexed resource \(number) has no state")
                        }
                        var state = try ProjectionFormat.decodeState(stored)
                        let checkpoint = state.accruedUntil
                        let written = try materialize(resourceNumber: number, state: &state, until: target, ownerRows: &ownerRows, in: txn)
                        if state.accruedUntil != checkpoint {
                            try txn.put(databases.resourceState, stateKey, ProjectionFormat.encode(state))
                        }
                        if written > 0 { rolled += 1 }
                        hours += written
                    }
                    try ownerRows.apply(to: txn, database: databases.ownerHourly)
                    return (last, rolled, hours)
                }
                batches += 1
                yieldToWaitingWriters()
                summary.resourcesRolled += rolled
                summary.resourceHours += hours
                guard let lastKey else { break }
                resumeAfter = lastKey
            }
        }
        try write { txn in
            try ProjectionMeta.put(txn, meta, ProjectionMeta.watermark, target)
            try txn.delete(meta, ProjectionMeta.rollupTarget)
        }
        return summary
    }

    /// The rollup watermark: hours before it are materialized for every resource (nil before any rollup).
    public func watermark() throws(LedgerError) -> Timestamp? {
        try read { txn in try ProjectionMeta.timestamp(txn, databases.meta, ProjectionMeta.watermark) }
    }

    /// Rewrites every projection from the log alone, in one transaction (readers see the old projections
    /// or the new ones, never a mix).
    public func rebuild(progress: (Int) -> Void = { _ in }) throws(LedgerError) -> RebuildSummary {
        let summary = try rebuildProjections(progress: progress)
        logger.notice("rebuilt the projections from the log", metadata: [
            "resources": "\(summary.resources)", "events": "\(summary.events)", "hourly_rows": "\(summary.hourlyRows)",
        ])
        return summary
    }

    private func rebuildProjections(progress: (Int) -> Void) throws(LedgerError) -> RebuildSummary {
        try write { txn in
            let meta = databases.meta
            let watermark = try ProjectionMeta.timestamp(txn, meta, ProjectionMeta.watermark)
            let target = try ProjectionMeta.timestamp(txn, meta, ProjectionMeta.rollupTarget)
            let materializeUntil = max(watermark ?? .earliest, target ?? .earliest)
            // Hours before the compaction horizon are sealed: their events are gone, their rows stay.
            let horizon = try ProjectionMeta.timestamp(txn, meta, ProjectionMeta.horizon) ?? .earliest
            for db in [databases.resourceState, databases.running, databases.ownerTotals] { try txn.clear(db) }
            try deleteRows(from: horizon, in: txn)
            var summary = RebuildSummary(resources: 0, events: 0, hourlyRows: 0)
            var unmatched: UInt64 = 0
            var context = try ProjectionContext(reading: txn, meta: meta)
            for (number, resource, owner) in try allResources(in: txn) {
                let entries = try timeline(resourceNumber: number, in: txn)
                let base = try compactionBase(resourceNumber: number, in: txn)
                let (state, rows) = try expectedProjection(entries, resource: resource, owner: owner, base: base,
                                                           materializeUntil: materializeUntil, rowsFrom: horizon)
                for (hour, amounts) in rows {
                    try txn.put(databases.hourly, ProjectionFormat.hourlyKey(hour: hour, owner: state.owner, resource: state.resource),
                                ProjectionFormat.encode(amounts))
                }
                try txn.put(databases.resourceState, BigEndianKey(number), ProjectionFormat.encode(state))
                try updateCurrent(from: nil, to: state, resourceNumber: number, context: &context, in: txn)
                if entries.contains(where: { $0.occurredAt >= state.accruedUntil }) {
                    try txn.put(databases.pending, ProjectionFormat.ownerKey(owner, type: resource.type, id: resource.id), BigEndianKey(number).bytes)
                }
                unmatched += state.unmatchedStops
                summary.resources += 1
                summary.events += entries.count
                summary.hourlyRows += rows.count
                if summary.resources % 1000 == 0 { progress(summary.resources) }
            }
            context.unmatchedStopsDelta = 0
            try context.write(to: txn, meta: meta, totals: databases.ownerTotals, ownerHourly: databases.ownerHourly)
            // Every owner-hour, sealed hours included: an upgrade from format 3 has none yet.
            try rewriteOwnerRows(from: .earliest, in: txn)
            try txn.put(meta, ProjectionMeta.unmatchedStops, BigEndianKey(unmatched).bytes)
            if materializeUntil > .earliest { try ProjectionMeta.put(txn, meta, ProjectionMeta.watermark, materializeUntil) }
            try txn.delete(meta, ProjectionMeta.rollupTarget)
            return summary
        }
    }

    /// Deletes the hourly rows of hours at or after `from`, as one key range.
    func deleteRows(from: Timestamp, in txn: borrowing WriteTransaction) throws {
        var writer = ByteWriter(capacity: 8)
        writer.writeOrdered(from.microseconds)
        let cursor = try txn.cursor(databases.hourly)
        var entry = try cursor.seek(atLeast: writer.bytes)
        while entry != nil {
            try cursor.deleteCurrent()
            entry = try cursor.seek(atLeast: writer.bytes)
        }
    }

    /// Checks the data file's structure page by page, then replays every resource's timeline and compares
    /// the result with the stored projections and the log's indexes.
    ///
    /// A damaged page structure throws `LedgerError.corrupt` naming the page before LMDB reads it (LMDB
    /// has no checksums and could crash on it); damaged records throw `corrupt` through their CRC-32;
    /// projections or indexes that disagree with the log are returned as differences.
    public func verify(maximumDifferences: Int = 20) throws(LedgerError) -> VerifyReport {
        let structure: StructureReport
        do { structure = try environment.checkStructure() } catch { throw Self.map(error, path: path) }
        var report = try verifyContents(maximumDifferences: maximumDifferences)
        report.pagesChecked = structure.pages
        return report
    }

    private func verifyContents(maximumDifferences: Int) throws(LedgerError) -> VerifyReport {
        try read { txn in
            let meta = databases.meta
            let horizon = try ProjectionMeta.timestamp(txn, meta, ProjectionMeta.horizon) ?? .earliest
            let checkpointLimit = max(try ProjectionMeta.timestamp(txn, meta, ProjectionMeta.watermark) ?? .earliest,
                                      try ProjectionMeta.timestamp(txn, meta, ProjectionMeta.rollupTarget) ?? .earliest)
            var report = VerifyReport(pagesChecked: 0, resourcesChecked: 0, eventsReplayed: 0, differenceCount: 0, differences: [])
            func differ(_ text: String) {
                report.differenceCount += 1
                if report.differences.count < maximumDifferences { report.differences.append(text) }
            }
            // Rows are checked one resource at a time by point lookups, so memory stays bounded by one
            // resource's rows; rows nobody accounts for are found by comparing counts, then located.
            var horizonKey = ByteWriter(capacity: 8)
            horizonKey.writeOrdered(horizon.microseconds)
            var matchedRows = 0
            var expectedRunning: [[UInt8]: UInt64] = [:]
            var expectedPending: [[UInt8]: UInt64] = [:]
            var expectedTotals: [[UInt8]: ProjectionFormat.OwnerTotals] = [:]
            var unmatched: UInt64 = 0
            for (number, resource, owner) in try allResources(in: txn) {
                let entries = try timeline(resourceNumber: number, in: txn)
                let base = try compactionBase(resourceNumber: number, in: txn)
                report.resourcesChecked += 1
                report.eventsReplayed += entries.count
                guard let storedBytes = try txn.get(databases.resourceState, BigEndianKey(number)) else {
                    differ("\(resource): no current state stored")
                    continue
                }
                let stored = try ProjectionFormat.decodeState(storedBytes)
                // Rollup (to its target) and compaction (to the horizon, never past the watermark) are the
                // only writers of a checkpoint; one beyond them is damage, and replaying to it could take forever.
                guard stored.accruedUntil <= checkpointLimit else {
                    differ("\(resource): its checkpoint \(stored.accruedUntil) lies beyond the rollup watermark \(checkpointLimit)")
                    continue
                }
                // Rows must hold exactly the log's usage before the resource's own checkpoint.
                let (expected, expectedRows) = try expectedProjection(entries, resource: resource, owner: owner, base: base,
                                                                      materializeUntil: stored.accruedUntil, rowsFrom: horizon)
                if stored != expected { differ("\(resource): stored state \(describe(stored)) differs from the log's \(describe(expected))") }
                if entries.contains(where: { $0.occurredAt >= stored.accruedUntil }) {
                    expectedPending[ProjectionFormat.ownerKey(owner, type: resource.type, id: resource.id)] = number
                }
                for (hour, amounts) in expectedRows.sorted(by: { $0.key < $1.key }) {
                    let key = ProjectionFormat.hourlyKey(hour: hour, owner: expected.owner, resource: expected.resource)
                    let stored = try txn.get(databases.hourly, key)
                    if stored != nil { matchedRows += 1 }
                    // Rows are encoded canonically (names sorted), so equal bytes are equal rows; decode only to
                    // compare (and describe) the rest.
                    if let stored, ProjectionFormat.encode(amounts).withUnsafeBytes({ $0.elementsEqual(stored) }) { continue }
                    let found = try stored.map { try ProjectionFormat.decodeRow($0) }
                    if found != amounts {
                        differ("\(resource) hour \(Timestamp(microseconds: hour)): stored \(found.map(describe) ?? "nothing"), the log gives \(describe(amounts))")
                    }
                }
                if expected.running {
                    expectedRunning[ProjectionFormat.ownerKey(expected.owner, type: expected.resource.type, id: expected.resource.id)] = number
                    try expectedTotals[ProjectionFormat.ownerKey(expected.owner, type: expected.resource.type), default: .init()]
                        .add(expected.footprint, sign: 1)
                }
                unmatched += expected.unmatchedStops
            }
            // Every stored row (of an hour at or after the horizon; earlier hours are sealed) must be one the
            // replay gave. Count them (in the same pass that checks owner_hourly against every row); only if
            // there are more, find the extra ones.
            let storedCount = try verifyOwnerRows(countingFrom: horizonKey.bytes, in: txn, differ: differ)
            if storedCount != matchedRows {
                let rows = try txn.cursor(databases.hourly)
                let extra = storedCount - matchedRows
                var located = 0
                var row = try rows.seek(atLeast: horizonKey.bytes)
                var expectedHours: [ResourceID: Set<Int64>] = [:]
                while let current = row, report.differences.count < maximumDifferences, located < extra {
                    let parts = try ProjectionFormat.decodeHourlyKey(current.key)
                    if expectedHours[parts.resource] == nil {
                        expectedHours[parts.resource] = try expectedHourSet(parts.resource, horizon: horizon, checkpointLimit: checkpointLimit, in: txn)
                    }
                    if expectedHours[parts.resource]?.contains(parts.hour) != true {
                        located += 1
                        differ("\(parts.resource) hour \(Timestamp(microseconds: parts.hour)): a row is stored that the log does not give")
                    }
                    row = try rows.next()
                }
                report.differenceCount += extra - located
            }
            var storedRunning: [[UInt8]: UInt64] = [:]
            let running = try txn.cursor(databases.running)
            var entry = try running.first()
            while let current = entry {
                storedRunning[Array(current.key)] = try StorageFormat.decodeNumber(current.value, what: "a running entry")
                entry = try running.next()
            }
            if storedRunning != expectedRunning {
                differ("running index: \(storedRunning.count) entries stored, the log gives \(expectedRunning.count) (or they name other resources)")
            }
            var storedPending: [[UInt8]: UInt64] = [:]
            try scan(databases.pending, prefix: [], in: txn) { key, value in
                storedPending[Array(key)] = try StorageFormat.decodeNumber(value, what: "a pending entry")
            }
            if storedPending != expectedPending {
                differ("pending index: \(storedPending.count) entries stored, the log gives \(expectedPending.count) (or they name other resources)")
            }
            var storedTotals: [[UInt8]: ProjectionFormat.OwnerTotals] = [:]
            let totals = try txn.cursor(databases.ownerTotals)
            entry = try totals.first()
            while let current = entry {
                storedTotals[Array(current.key)] = try ProjectionFormat.decodeTotals(current.value)
                entry = try totals.next()
            }
            if storedTotals != expectedTotals {
                differ("owner totals: stored totals differ from the sums of running resources' footprints")
            }
            let storedUnmatched = try txn.get(meta, ProjectionMeta.unmatchedStops).map { try StorageFormat.decodeNumber($0, what: "unmatched_stops") } ?? 0
            if storedUnmatched != unmatched { differ("unmatched stops: \(storedUnmatched) counted, the log gives \(unmatched)") }
            try verifyLogIndexes(in: txn, timelineEntries: report.eventsReplayed, differ: differ)
            return report
        }
    }

    /// Checks the log's own indexes: every event decodes, is found under its id and in its resource's
    /// timeline, and neither index holds anything else. A damaged `event_ids` entry would otherwise
    /// make a retry count twice without any projection noticing.
    private func verifyLogIndexes(in txn: borrowing ReadTransaction, timelineEntries: Int, differ: (String) -> Void) throws {
        var count = 0
        let counters = try LogCounters(reading: txn, meta: databases.meta)
        let events = try txn.cursor(databases.events)
        if let last = try events.last(), try StorageFormat.decodeNumber(last.key, what: "an events key") >= counters.nextSeq {
            differ("next_seq \(counters.nextSeq) is not past the last recorded event: a new event would overwrite one")
        }
        var entry = try events.first()
        while let current = entry {
            count += 1
            let seq = try StorageFormat.decodeNumber(current.key, what: "an events key")
            let event = try EventRecord.decode(current.value, seq: seq).event
            let mapped = try txn.get(databases.eventIDs, event.id).map { try StorageFormat.decodeNumber($0, what: "an event_ids entry") }
            if mapped != seq { differ("event seq \(seq): its id '\(event.id)' maps to \(mapped.map { "seq \($0)" } ?? "nothing")") }
            if let number = try resourceNumber(event.resource, in: txn) {
                let key = StorageFormat.timelineKey(resource: number, occurredAt: event.occurredAt, seq: seq)
                if try txn.get(databases.timeline, key) == nil { differ("event seq \(seq): missing from the timeline of \(event.resource)") }
            } else {
                differ("event seq \(seq): its resource \(event.resource) is not registered")
            }
            entry = try events.next()
        }
        let ids = try txn.statistics(databases.eventIDs).entries
        if ids != count { differ("event_ids holds \(ids) entries for \(count) events") }
        let timeline = try txn.statistics(databases.timeline).entries
        if timeline != count || timelineEntries != count {
            differ("the timelines hold \(timeline) entries (\(timelineEntries) reachable from registered resources) for \(count) events")
        }
    }

    /// Checks that `owner_hourly` holds, for every owner-hour (sealed hours included), exactly the sum of the
    /// stored `hourly` rows: one merge of two scans in the same key order. Returns how many rows have keys
    /// at or after `countingFrom`.
    private func verifyOwnerRows(countingFrom: [UInt8], in txn: borrowing ReadTransaction, differ: (String) -> Void) throws -> Int {
        let rows = try txn.cursor(databases.hourly)
        var row = try rows.first()
        let owners = try txn.cursor(databases.ownerHourly)
        var stored = try owners.first()
        var sums = OwnerRowSums()
        var counted = 0
        while true {
            var expected: (key: [UInt8], row: OwnerRow)?
            while expected == nil, let current = row {
                if counted > 0 || !current.key.lexicographicallyPrecedes(countingFrom) { counted += 1 }
                expected = try sums.add(key: current.key, value: current.value)
                row = try rows.next()
            }
            guard let expected = expected ?? sums.finish() else { break }
            while let current = stored, current.key.lexicographicallyPrecedes(expected.key) {
                differ("owner_hourly \(OwnerRow.describe(key: current.key)): an entry is stored that no hourly rows give")
                stored = try owners.next()
            }
            if let current = stored, current.key.elementsEqual(expected.key) {
                let found = try OwnerRow(decoding: current.value)
                if found != expected.row {
                    differ("owner_hourly \(OwnerRow.describe(key: expected.key)): stored \(describe(found.amounts)) over \(found.rows) rows, the rows give \(describe(expected.row.amounts)) over \(expected.row.rows)")
                }
                stored = try owners.next()
            } else {
                differ("owner_hourly \(OwnerRow.describe(key: expected.key)): missing, the rows give \(describe(expected.row.amounts))")
            }
        }
        while let current = stored {
            differ("owner_hourly \(OwnerRow.describe(key: current.key)): an entry is stored that no hourly rows give")
            stored = try owners.next()
        }
        return counted
    }

    /// The hours for which the log gives `resource` a row (used only to locate unexpected stored rows).
    private func expectedHourSet(_ resource: ResourceID, horizon: Timestamp, checkpointLimit: Timestamp,
                                 in txn: borrowing ReadTransaction) throws -> Set<Int64> {
        guard let number = try resourceNumber(resource, in: txn),
              let value = try txn.get(databases.resources, StorageFormat.resourceKey(resource)) else { return [] }
        let owner = try StorageFormat.decodeResourceValue(value).owner
        let entries = try timeline(resourceNumber: number, in: txn)
        let base = try compactionBase(resourceNumber: number, in: txn)
        let stored = try txn.get(databases.resourceState, BigEndianKey(number)).map { try ProjectionFormat.decodeState($0) }
        let until = min(stored?.accruedUntil ?? .earliest, checkpointLimit)
        let (_, rows) = try expectedProjection(entries, resource: resource, owner: owner, base: base, materializeUntil: until, rowsFrom: horizon)
        return Set(rows.keys)
    }

    /// The state and hourly rows that a timeline gives when running usage is materialized to `materializeUntil`.
    func expectedProjection(_ entries: [TimelineEntry], resource: ResourceID, owner: String, base: CompactionBase,
                            materializeUntil: Timestamp, rowsFrom: Timestamp) throws -> (ResourceState, [Int64: UsageAmounts]) {
        let fold = try Fold.replay(entries, resource: resource, owner: owner, base: base)
        var state = fold.state
        state.accruedUntil = materializeUntil
        (state.checkpointRunning, state.checkpointFootprint) = Fold.checkpoint(fold, at: materializeUntil)
        let rows = try Fold.hourly(fold, from: rowsFrom, until: materializeUntil)
        return (state, rows)
    }

    /// Every resource the ledger has seen: its number, identity and owner.
    func allResources(in txn: borrowing some ReadableTransaction & ~Copyable) throws -> [(UInt64, ResourceID, String)] {
        var resources: [(UInt64, ResourceID, String)] = []
        let cursor = try txn.cursor(databases.resources)
        var entry = try cursor.first()
        while let current = entry {
            let parts = Array(current.key).split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw LedgerError.corrupt(reason: "a resources key has no type/id separator") }
            let resource = ResourceID(type: String(decoding: parts[0], as: UTF8.self), id: String(decoding: parts[1], as: UTF8.self))
            let value = try StorageFormat.decodeResourceValue(current.value)
            resources.append((value.number, resource, value.owner))
            entry = try cursor.next()
        }
        return resources
    }

    private func describe(_ state: ResourceState) -> String {
        let running = state.running ? "running since \(state.runStartedAt.map(\.rfc3339) ?? "?") with \(state.footprint.map { "\($0.name)=\($0.value)" }.joined(separator: ","))" : "stopped"
        return "(\(running), unmatched stops \(state.unmatchedStops), rows to \(state.accruedUntil) where it \(state.checkpointRunning ? "ran" : "did not run"))"
    }

    private func describe(_ amounts: UsageAmounts) -> String {
        var parts = ["running_seconds=\(ExactDecimal.seconds(fromMicroseconds: amounts.runningMicroseconds))"]
        for name in amounts.meterMicroseconds.keys.sorted() {
            parts.append("\(name)_seconds=\(ExactDecimal.seconds(fromMicroseconds: amounts.meterMicroseconds[name] ?? 0))")
        }
        for name in amounts.adjustments.keys.sorted() { parts.append("\(name)=\(amounts.adjustments[name] ?? 0)") }
        return parts.joined(separator: " ")
    }
}
