import Logging
import LMDBStorage
import LedgerCore

/// What seeding baselines did.
public struct SeedSummary: Sendable, Equatable {
    /// `was_running` events appended for listed resources the ledger did not see running.
    public var baselinesAppended = 0
    /// Listed resources already running: nothing appended (unless their footprint was corrected).
    public var alreadyRunning = 0
    /// `was_running` events appended, with `correctFootprints`, for listed running resources whose footprint
    /// in the ledger differed from the list's (counted in `alreadyRunning` too).
    public var footprintsCorrected = 0
    /// `stopped` events (reason `absent_at_reseed`) appended for running resources the list omits.
    public var stoppedMissing = 0
    /// Events that were already recorded (a rerun at the same instant).
    public var duplicates = 0
    /// Listed resources rejected, with their index in the list and why.
    public var rejected: [(index: Int, error: LedgerError)] = []

    public static func == (a: SeedSummary, b: SeedSummary) -> Bool {
        a.baselinesAppended == b.baselinesAppended && a.alreadyRunning == b.alreadyRunning
            && a.footprintsCorrected == b.footprintsCorrected && a.stoppedMissing == b.stoppedMissing
            && a.duplicates == b.duplicates && a.rejected.map(\.index) == b.rejected.map(\.index)
            && a.rejected.map(\.error) == b.rejected.map(\.error)
    }

    /// A summary with these counts (and no rejections); all zero is "nothing seeded yet".
    public init(
        baselinesAppended: Int = 0, alreadyRunning: Int = 0, footprintsCorrected: Int = 0, stoppedMissing: Int = 0,
        duplicates: Int = 0
    ) {
        self.baselinesAppended = baselinesAppended
        self.alreadyRunning = alreadyRunning
        self.footprintsCorrected = footprintsCorrected
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
    /// for every running resource the list omits. With `correctFootprints`, a listed resource that runs
    /// with another footprint than the list's gets a `was_running` with the list's footprint (usage follows
    /// it from `at`). Idempotency keys are derived from the instant and the resource, so a rerun appends
    /// nothing: resources already running (with the listed footprint) are skipped, and a rerun at the same
    /// instant is a duplicate. One transaction.
    public func seedBaselines(
        _ running: [RunningResource], stopMissing: Bool, correctFootprints: Bool = false, at: Timestamp? = nil
    ) throws(LedgerError) -> SeedSummary {
        let now = options.clock.now()
        let instant = at ?? now
        let reseed = Reseed(stopMissing: stopMissing, correctFootprints: correctFootprints, at: instant, now: now)
        let summary = try write { txn in try self.seed(running, reseed, in: txn) }
        log(summary, "seeded baselines", at: instant)
        return summary
    }

    private func log(_ summary: SeedSummary, _ what: String, at instant: Timestamp) {
        logger.notice(
            "\(what) at \(instant)",
            metadata: [
                "baselines": "\(summary.baselinesAppended)", "already_running": "\(summary.alreadyRunning)",
                "footprints_corrected": "\(summary.footprintsCorrected)",
                "stopped_missing": "\(summary.stoppedMissing)", "duplicates": "\(summary.duplicates)",
                "rejected": "\(summary.rejected.count)",
            ])
    }

    /// What one seeding does, and when.
    private struct Reseed {
        var stopMissing: Bool
        var correctFootprints: Bool
        var at: Timestamp
        var now: Timestamp
    }

    /// Why a seeding appends an event: which summary count it goes to.
    private enum SeedOrigin {
        case baseline(index: Int)
        case correction(index: Int)
        case stop

        var index: Int {
            switch self {
            case .baseline(let index), .correction(let index): return index
            case .stop: return -1
            }
        }
    }

    private func seed(_ running: [RunningResource], _ reseed: Reseed, in txn: borrowing WriteTransaction) throws
        -> SeedSummary
    {
        var summary = SeedSummary()
        var runningNow: [ResourceID: (owner: String, number: UInt64)] = [:]
        let cursor = try txn.cursor(schema.running)
        var entry = try cursor.first()
        while let current = entry {
            runningNow[current.key.resource] = (current.key.owner, current.value)
            entry = try cursor.next()
        }
        var events: [UsageEvent] = [], origins: [SeedOrigin] = []
        let instant = reseed.at
        for (index, entry) in running.enumerated() {
            var origin = SeedOrigin.baseline(index: index)
            if let known = runningNow[entry.resource] {
                summary.alreadyRunning += 1
                guard reseed.correctFootprints,
                    try txn.get(schema.resourceState, known.number)?.footprint != entry.footprint
                else { continue }
                origin = .correction(index: index)
            }
            let prefix = if case .correction = origin { "footprint" } else { "baseline" }
            events.append(
                UsageEvent(
                    id: "\(prefix)/\(instant.microseconds)/\(Self.fingerprint(entry.resource))", kind: .wasRunning,
                    resource: entry.resource, owner: entry.owner, occurredAt: instant,
                    footprint: entry.footprint, attributes: entry.attributes))
            origins.append(origin)
        }
        if reseed.stopMissing {
            let listed = Set(running.map(\.resource))
            for (resource, known) in runningNow.sorted(by: { $0.key < $1.key }) where !listed.contains(resource) {
                events.append(
                    UsageEvent(
                        id: "reseed-stop/\(instant.microseconds)/\(Self.fingerprint(resource))", kind: .stopped,
                        resource: resource, owner: known.owner, occurredAt: instant, reason: "absent_at_reseed"))
                origins.append(.stop)
            }
        }
        let result = try appendPrepared(
            events.map { prepare($0, now: reseed.now) }, recordedAt: reseed.now, in: txn)
        for (outcome, origin) in zip(result.outcomes, origins) {
            switch (outcome, origin) {
            case (.appended, .baseline): summary.baselinesAppended += 1
            case (.appended, .correction): summary.footprintsCorrected += 1
            case (.appended, .stop): summary.stoppedMissing += 1
            case (.duplicate, _): summary.duplicates += 1
            case (.rejected(let error), _): summary.rejected.append((origin.index, error))
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
            PurgePreview(
                events: try txn.count(schema.events.id), resources: try txn.count(schema.resources.id),
                hourlyRows: try txn.count(schema.hourly.id))
        }
    }

    /// Destructively empties the log and every projection, then seeds baselines for `running`, in one
    /// transaction. `seq` keeps counting up, and feed consumers are told that events were pruned.
    public func purgeAndReseed(running: [RunningResource], at: Timestamp? = nil) throws(LedgerError) -> SeedSummary {
        let now = options.clock.now()
        let instant = at ?? now
        logger.warning(
            "purging the log and every projection before reseeding", metadata: ["resources": "\(running.count)"])
        let schema = self.schema
        let summary = try write { txn in
            // Everything but `meta`, whose counters go on (seq keeps counting up).
            for table in schema.tables([.log, .index, .projection]) { try txn.clear(table) }
            let counters = try LogCounters(reading: txn, meta: schema.meta)
            if counters.nextSeq > 1 {
                try txn.put(Meta.prunedThroughSeq, counters.nextSeq - 1, in: schema.meta)
                if try txn.get(Meta.horizon, in: schema.meta) == nil {
                    try txn.put(Meta.horizon, .earliest, in: schema.meta)
                }
            }
            try txn.put(Meta.unmatchedStops, 0, in: schema.meta)
            let reseed = Reseed(stopMissing: false, correctFootprints: false, at: instant, now: now)
            return try self.seed(running, reseed, in: txn)
        }
        log(summary, "purged and reseeded", at: instant)
        return summary
    }
}
