import LMDBStorage
import LedgerCore

/// A page of the event feed.
public struct FeedPage: Sendable, Equatable {
    /// Events in `seq` order, all after the cursor that was asked for.
    public var events: [RecordedEvent]
    /// The cursor for the next page: the last returned `seq`, or the cursor asked for when none.
    public var nextCursor: UInt64
    /// Set when compaction pruned events after the cursor: the page holds only what remains, and a
    /// consumer that needs every event must rebuild its view from `currentUsage` (and `usage`) instead.
    public var pruned: PrunedEvents?
}

/// The signal that a feed cursor predates events compaction removed.
public struct PrunedEvents: Sendable, Equatable {
    /// The highest `seq` compaction has pruned.
    public var throughSeq: UInt64
    /// The compaction horizon: events before it were pruned (opening events of running resources kept).
    public var horizon: Timestamp
}

/// Facts about a ledger: what it holds and how big its files are.
public struct LedgerStatistics: Sendable, Equatable {
    /// The on-disk format version.
    public var formatVersion: UInt32
    /// Events appended per kind (`started`, `was_running`, `stopped`, `adjustment`) over the ledger's life,
    /// including those compaction pruned since.
    public var eventsByKind: [EventKind: UInt64]
    /// Events in the log now: `appendedEvents` minus `prunedEvents`.
    public var storedEvents: Int
    /// Resources the ledger has seen.
    public var resources: Int
    /// The `seq` the next new event will get.
    public var nextSeq: UInt64
    /// Submissions that were duplicates of recorded events, over the ledger's life.
    public var duplicates: UInt64
    /// Events refused by `append`, by `LedgerError.code`, over the ledger's life.
    public var rejectedByCode: [String: UInt64]
    /// Events compaction removed: recorded minus still stored.
    public var prunedEvents: UInt64
    /// The ledger's clock minus the rollup watermark, in microseconds (nil before the first rollup).
    public var rollupLagMicroseconds: Int64?
    /// `stopped` events that found their resource not running (stored, without effect on usage).
    public var unmatchedStops: UInt64
    /// Hours before this instant are rolled up into hourly snapshots (nil before the first rollup).
    public var watermark: Timestamp?
    /// Set while a rollup is under way (or was interrupted): the watermark it is rolling up to. The next
    /// rollup resumes it.
    public var rollupTarget: Timestamp?
    /// Events before this instant were compacted away (nil before the first compaction).
    public var horizon: Timestamp?
    /// Hourly snapshots before this instant were dropped by retention (nil if none were).
    public var snapshotsRetainedFrom: Timestamp?
    /// Entries and bytes of each named database, by name.
    public var databases: [String: DatabaseStatistics]
    /// Map size, use and reader slots.
    public var environment: EnvironmentStatistics
    /// How the data file's pages are used: free pages, and what a compacting copy (`backup(to:compacting:)`)
    /// would write and give back.
    public var space: SpaceStatistics

    /// Events appended over the ledger's life (the sum of `eventsByKind`).
    public var appendedEvents: UInt64 { eventsByKind.values.reduce(0, &+) }
}

extension Ledger {
    /// The most events one `events(after:limit:)` call returns.
    public static let maximumPageSize = 100_000

    /// Events with `seq` greater than `cursor`, in `seq` order, at most `limit` of them: the consumer feed.
    /// Start with cursor 0 and pass each page's `nextCursor` to the next call.
    public func events(after cursor: UInt64, limit: Int) throws(LedgerError) -> FeedPage {
        guard limit > 0, limit <= Self.maximumPageSize else {
            throw .invalidArgument(reason: "limit must be 1 to \(Self.maximumPageSize) (got \(limit))")
        }
        return try read { txn in
            var events: [RecordedEvent] = []
            var names = LogNames(schema: schema)
            let cursorAt = try txn.cursor(schema.events)
            var entry = cursor == .max ? nil : try cursorAt.rawSeek(atLeast: cursor + 1)
            while let current = entry, events.count < limit {
                let seq = try cursorAt.key(of: current)
                events.append(try EventRecord.decode(current.value, seq: seq, names: &names, in: txn))
                entry = try cursorAt.rawNext()
            }
            var pruned: PrunedEvents?
            if let through = try txn.get(Meta.prunedThroughSeq, in: schema.meta), cursor < through,
                let horizon = try txn.get(Meta.horizon, in: schema.meta)
            {
                pruned = PrunedEvents(throughSeq: through, horizon: horizon)
            }
            return FeedPage(events: events, nextCursor: events.last?.seq ?? cursor, pruned: pruned)
        }
    }

    /// One event by its `seq`, or nil when there is none.
    public func event(seq: UInt64) throws(LedgerError) -> RecordedEvent? {
        try read { txn in
            var names = LogNames(schema: schema)
            guard let bytes = try txn.rawGet(schema.events, seq) else { return nil }
            return try EventRecord.decode(bytes, seq: seq, names: &names, in: txn)
        }
    }

    /// The owner of `resource`, or nil when the ledger has never seen it.
    public func owner(of resource: ResourceID) throws(LedgerError) -> String? {
        try read { txn in
            try txn.get(schema.resources, resource)?.owner
        }
    }

    /// Every recorded event of `resource`, in timeline order: by `occurred_at`, then `seq`.
    public func history(of resource: ResourceID) throws(LedgerError) -> [RecordedEvent] {
        try read { txn in
            guard let number = try resourceNumber(resource, in: txn) else { return [] }
            return try recordedTimeline(resourceNumber: number, in: txn)
        }
    }

    /// `now - since` in microseconds, at least 0; saturating, since `since` comes from the file.
    static func lag(now: Timestamp, since: Timestamp) -> Int64 {
        let (difference, overflow) = now.microseconds.subtractingReportingOverflow(since.microseconds)
        return overflow ? (since.microseconds < 0 ? .max : 0) : max(0, difference)
    }

    /// Counts, sizes and reader slots.
    public func statistics() throws(LedgerError) -> LedgerStatistics {
        try read { txn in
            let counters = try LogCounters(reading: txn, meta: schema.meta)
            var byKind: [EventKind: UInt64] = [:]
            for kind in EventKind.allCases { byKind[kind] = counters.byKind[Int(EventRecord.kindCode(kind)) - 1] }
            let meta = schema.meta
            let watermark = try txn.get(Meta.watermark, in: meta)
            var perDatabase: [String: DatabaseStatistics] = [:]
            for table in schema.all {
                perDatabase[table.name] = try txn.statistics(table)
            }
            var environment = try self.environment.statistics()
            environment.maximumMapSize = options.maximumMapSize
            return LedgerStatistics(
                formatVersion: StorageFormat.currentVersion, eventsByKind: byKind,
                storedEvents: perDatabase[Schema.events.name]?.entries ?? 0,
                resources: perDatabase[Schema.resources.name]?.entries ?? 0,
                nextSeq: counters.nextSeq,
                duplicates: counters.duplicates, rejectedByCode: counters.rejectedByCode,
                prunedEvents: counters.byKind.reduce(0, +) &- UInt64(perDatabase[Schema.events.name]?.entries ?? 0),
                rollupLagMicroseconds: watermark.map { Self.lag(now: options.clock.now(), since: $0) },
                unmatchedStops: try txn.get(Meta.unmatchedStops, in: meta) ?? 0,
                watermark: watermark,
                rollupTarget: try txn.get(Meta.rollupTarget, in: meta),
                horizon: try txn.get(Meta.horizon, in: meta),
                snapshotsRetainedFrom: try txn.get(Meta.snapshotsRetainedFrom, in: meta),
                databases: perDatabase, environment: environment,
                space: try txn.spaceStatistics(tables: schema.all))
        }
    }

    /// Writes a consistent copy of the ledger into the directory `target` while appends may continue, and
    /// flushes it to disk. The directory is created with mode 0700 when missing (an existing empty one is
    /// set to 0700) and the copy's `data.mdb` is 0600. With `compacting`, free pages are left out, so the
    /// copy can be smaller (`LedgerStatistics.space.compactedCopyBytes` says how big).
    ///
    /// - Throws: `LedgerError.targetExists` when `target` exists and is not an empty directory (it is left
    ///   untouched); `LedgerError.cannotOpen` when it cannot be created or written.
    public func backup(to target: String, compacting: Bool) throws(LedgerError) {
        let environment = try environment
        let directory = try BackupTarget(target)
        do {
            try environment.copy(toFile: directory.dataFile, compacting: compacting)
        } catch {
            directory.discard()
            throw Self.map(error, path: target)
        }
        directory.syncDirectory()
    }
}

extension Ledger {
    /// Every owner the ledger has seen, sorted (for the exporter, which exports sealed hours by owner).
    package func knownOwners() throws(LedgerError) -> [String] {
        try read { txn in
            var owners = Set<String>()
            let cursor = try txn.cursor(schema.resources)
            var entry = try cursor.first()
            while let current = entry {
                owners.insert(current.value.owner)
                entry = try cursor.next()
            }
            return owners.sorted()
        }
    }

    /// The start of the first hour any snapshot holds, or nil before the first rollup.
    package func firstSnapshotHourStart() throws(LedgerError) -> Timestamp? {
        try read { txn in try firstSnapshotHour(in: txn).map { Timestamp(microseconds: $0) } }
    }
}
