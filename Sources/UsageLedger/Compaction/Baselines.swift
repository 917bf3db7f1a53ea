import Logging
import LMDBStorage
import LedgerCore

/// What seeding baselines did.
public struct SeedSummary: Sendable, Equatable {
    /// `was_running` events appended for listed resources the ledger did not see running.
    public var baselinesAppended = 0
    /// Listed resources already running: nothing appended.
    public var alreadyRunning = 0
    /// `stopped` events (reason `absent_at_reseed`) appended for running resources the list omits.
    public var stoppedMissing = 0
    /// Events that were already recorded (a rerun at the same instant).
    public var duplicates = 0
    /// Listed resources rejected, with their index in the list and why.
    public var rejected: [(index: Int, error: LedgerError)] = []

    public static func == (a: SeedSummary, b: SeedSummary) -> Bool {
        a.baselinesAppended == b.baselinesAppended && a.alreadyRunning == b.alreadyRunning && a.stoppedMissing == b.stoppedMissing
            && a.duplicates == b.duplicates && a.rejected.map(\.index) == b.rejected.map(\.index) && a.rejected.map(\.error) == b.rejected.map(\.error)
    }

    /// A summary with these counts (and no rejections); all zero is "nothing seeded yet".
    public init(baselinesAppended: Int = 0, alreadyRunning: Int = 0, stoppedMissing: Int = 0, duplicates: Int = 0) {
        self.baselinesAppended = baselinesAppended
        self.alreadyRunning = alreadyRunning
        self.stoppedMissing = stoppedMissing
        self.duplicates = duplicates
    }
}

/// What `purgeAndReseed` deletes.
public struct PurgePreview: Sendable, Equatable {
    /// Events in the log.
    public var events: Int
    /// Resources known.
    public var resources: Int
    /// Hourly snapshot rows.
    public var hourlyRows: Int
}

extension Ledger {
    /// Appends, at `at` (default: the ledger's clock), a `was_running` baseline for every listed resource
    /// the ledger does not see running, and with `stopMissing` a `stopped` (reason `absent_at_reseed`)
    /// for every running resource the list omits. Idempotency keys are derived from the instant and the
    /// resource, so a rerun appends nothing: resources already running are skipped, and a rerun at the
    /// same instant is a duplicate. One transaction.
    public func seedBaselines(_ running: [RunningResource], stopMissing: Bool, at: Timestamp? = nil) throws(LedgerError) -> SeedSummary {
        let now = options.clock.now()
        let instant = at ?? now
        let summary = try write { txn in try seed(running, stopMissing: stopMissing, at: instant, now: now, in: txn) }
        log(summary, "seeded baselines", at: instant)
        return summary
    }

    private func log(_ summary: SeedSummary, _ what: String, at instant: Timestamp) {
        logger.notice("\(what) at \(instant)", metadata: [
            "baselines": "\(summary.baselinesAppended)", "already_running": "\(summary.alreadyRunning)",
            "stopped_missing": "\(summary.stoppedMissing)", "duplicates": "\(summary.duplicates)",
            "rejected": "\(summary.rejected.count)",
        ])
    }

    private func seed(_ running: [RunningResource], stopMissing: Bool, at instant: Timestamp, now: Timestamp,
                      in txn: borrowing WriteTransaction) throws -> SeedSummary {
        var summary = SeedSummary()
        var runningNow: [ResourceID: String] = [:]
        try scan(databases.running, prefix: [], in: txn) { key, _ in
            let parts = Array(key).split(separator: 0, omittingEmptySubsequences: false)
            guard parts.count == 3 else { throw LedgerError.corrupt(reason: "a running key does not hold owner, type and id") }
            runningNow[ResourceID(type: String(decoding: parts[1], as: UTF8.self), id: String(decoding: parts[2], as: UTF8.self))] =
                String(decoding: parts[0], as: UTF8.self)
        }
        var events: [UsageEvent] = [], origins: [Int] = []
        let listed = Set(running.map(\.resource))
        for (index, entry) in running.enumerated() {
            if runningNow[entry.resource] != nil {
                summary.alreadyRunning += 1
                continue
            }
            events.append(UsageEvent(id: "baseline/\(instant.microseconds)/\(Self.fingerprint(entry.resource))", kind: .wasRunning,
                                     resource: entry.resource, owner: entry.owner, occurredAt: instant,
                                     footprint: entry.footprint, attributes: entry.attributes))
            origins.append(index)
        }
        if stopMissing {
            for (resource, owner) in runningNow.sorted(by: { $0.key < $1.key }) where !listed.contains(resource) {
                events.append(UsageEvent(id: "reseed-stop/\(instant.microseconds)/\(Self.fingerprint(resource))", kind: .stopped,
                                         resource: resource, owner: owner, occurredAt: instant, reason: "absent_at_reseed"))
                origins.append(-1)
            }
        }
        let result = try appendPrepared(events.map { prepare($0, now: now) }, recordedAt: now, in: txn)
        for (outcome, origin) in zip(result.outcomes, origins) {
            switch outcome {
            case .appended: if origin >= 0 { summary.baselinesAppended += 1 } else { summary.stoppedMissing += 1 }
            case .duplicate: summary.duplicates += 1
            case .rejected(let error): summary.rejected.append((origin, error))
            }
        }
        return summary
    }

    /// A stable 64-bit FNV-1a fingerprint of a resource's identity, as 16 hex digits (keeps ids short).
    static func fingerprint(_ resource: ResourceID) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in Array(resource.type.utf8) + [0] + Array(resource.id.utf8) {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// What `purgeAndReseed` would delete.
    public func purgePreview() throws(LedgerError) -> PurgePreview {
        try read { txn in
            PurgePreview(events: try txn.statistics(databases.events).entries, resources: try txn.statistics(databases.resources).entries,
                         hourlyRows: try txn.statistics(databases.hourly).entries)
        }
    }

    /// Destructively empties the log and every projection, then seeds baselines for `running`, in one
    /// transaction. `seq` keeps counting up, and feed consumers are told that events were pruned.
    public func purgeAndReseed(running: [RunningResource], at: Timestamp? = nil) throws(LedgerError) -> SeedSummary {
        let now = options.clock.now()
        let instant = at ?? now
        logger.warning("purging the log and every projection before reseeding", metadata: ["resources": "\(running.count)"])
        let summary = try write { txn in
            for db in [databases.events, databases.eventIDs, databases.timeline, databases.resources, databases.resourceState,
                       databases.running, databases.ownerTotals, databases.hourly, databases.compactionBase, databases.pending,
                       databases.ownerHourly] {
                try txn.clear(db)
            }
            let counters = try LogCounters(reading: txn, meta: databases.meta)
            if counters.nextSeq > 1 {
                try txn.put(databases.meta, ProjectionMeta.prunedThroughSeq, BigEndianKey(counters.nextSeq - 1).bytes)
                if try ProjectionMeta.timestamp(txn, databases.meta, ProjectionMeta.horizon) == nil {
                    try ProjectionMeta.put(txn, databases.meta, ProjectionMeta.horizon, .earliest)
                }
            }
            try txn.put(databases.meta, ProjectionMeta.unmatchedStops, BigEndianKey(0).bytes)
            return try seed(running, stopMissing: false, at: instant, now: now, in: txn)
        }
        log(summary, "purged and reseeded", at: instant)
        return summary
    }
}
