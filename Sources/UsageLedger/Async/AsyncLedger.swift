import LedgerCore

extension Ledger {
    /// The ledger's calls for `async` code: `try await ledger.async.append(event)`.
    ///
    /// Every call of `Ledger` blocks its thread: appends wait for fsync, maintenance runs for seconds. In
    /// `async` code that would hold one of Swift's cooperative threads (as many as cores), so these variants
    /// run the same call on a pool of threads of the ledger's own (`BlockingThreads.count`, 16 per process,
    /// FIFO) and suspend the task meanwhile. Concurrent async appends still meet in group commit.
    ///
    /// Use the synchronous calls on threads you own (a worker thread, a command-line tool); use these from
    /// tasks, actors and request handlers. A call that has been submitted runs to completion even if its
    /// task is cancelled: an append is committed whole or not at all.
    public var async: AsyncLedger { AsyncLedger(self) }
}

/// `Ledger`'s calls as `async` functions that run off the cooperative thread pool; see `Ledger.async`.
public struct AsyncLedger: Sendable {
    /// The ledger the calls go to.
    public let ledger: Ledger

    /// The async view of `ledger`.
    public init(_ ledger: Ledger) { self.ledger = ledger }

    /// Runs `body` with the ledger on the blocking pool: for any call without its own async variant.
    public func run<R: Sendable>(_ body: @escaping @Sendable (Ledger) throws(LedgerError) -> R)
        async throws(LedgerError)
        -> R
    {
        let ledger = self.ledger
        return try await BlockingThreads.shared.run { () throws(LedgerError) in try body(ledger) }
    }

    /// `Ledger.append(_:)`: returns once the event is durable.
    @discardableResult
    public func append(_ event: UsageEvent) async throws(LedgerError) -> AppendReceipt {
        try await run { ledger throws(LedgerError) in try ledger.append(event) }
    }

    /// `Ledger.append(contentsOf:)`: one outcome per event, in order, once they are durable.
    @discardableResult
    public func append(contentsOf events: [UsageEvent]) async throws(LedgerError) -> AppendResult {
        try await run { ledger throws(LedgerError) in try ledger.append(contentsOf: events) }
    }

    /// `Ledger.events(after:limit:)`.
    public func events(after cursor: UInt64, limit: Int) async throws(LedgerError) -> FeedPage {
        try await run { ledger throws(LedgerError) in try ledger.events(after: cursor, limit: limit) }
    }

    /// `Ledger.currentUsage(owner:type:listingResources:)`.
    public func currentUsage(owner: String? = nil, type: String? = nil, listingResources: Bool = true)
        async throws(LedgerError) -> CurrentUsage
    {
        try await run { ledger throws(LedgerError) in
            try ledger.currentUsage(owner: owner, type: type, listingResources: listingResources)
        }
    }

    /// `Ledger.status(of:)`.
    public func status(of resource: ResourceID) async throws(LedgerError) -> ResourceStatus? {
        try await run { ledger throws(LedgerError) in try ledger.status(of: resource) }
    }

    /// `Ledger.history(of:)`.
    public func history(of resource: ResourceID) async throws(LedgerError) -> [RecordedEvent] {
        try await run { ledger throws(LedgerError) in try ledger.history(of: resource) }
    }

    /// `Ledger.usage(_:from:to:granularity:timeZone:groupByResource:)`.
    public func usage(
        _ subject: UsageSubject, from: Timestamp, to: Timestamp,
        granularity: UsageGranularity = Ledger.defaultUsageGranularity, timeZone: UsageTimeZone = .utc,
        groupByResource: Bool = false
    ) async throws(LedgerError) -> UsageReport {
        try await run { ledger throws(LedgerError) in
            try ledger.usage(
                subject, from: from, to: to, granularity: granularity, timeZone: timeZone,
                groupByResource: groupByResource)
        }
    }

    /// `Ledger.rollUp(now:graceMicroseconds:batchSize:)`.
    public func rollUp(
        now: Timestamp? = nil, graceMicroseconds: Int64 = Ledger.defaultRollupGraceMicroseconds,
        batchSize: Int = Ledger.defaultRollupBatchSize
    ) async throws(LedgerError) -> RollupSummary {
        try await run { ledger throws(LedgerError) in
            try ledger.rollUp(now: now, graceMicroseconds: graceMicroseconds, batchSize: batchSize)
        }
    }

    /// `Ledger.compact(_:)`, without progress reports.
    public func compact(_ options: CompactionOptions = CompactionOptions()) async throws(LedgerError)
        -> CompactionSummary
    {
        try await run { ledger throws(LedgerError) in try ledger.compact(options) }
    }

    /// `Ledger.seedBaselines(_:stopMissing:correctFootprints:at:)`.
    public func seedBaselines(
        _ running: [RunningResource], stopMissing: Bool, correctFootprints: Bool = false, at: Timestamp? = nil
    ) async throws(LedgerError) -> SeedSummary {
        try await run { ledger throws(LedgerError) in
            try ledger.seedBaselines(running, stopMissing: stopMissing, correctFootprints: correctFootprints, at: at)
        }
    }

    /// `Ledger.verify(maximumDifferences:)`.
    public func verify(maximumDifferences: Int = 20) async throws(LedgerError) -> VerifyReport {
        try await run { ledger throws(LedgerError) in try ledger.verify(maximumDifferences: maximumDifferences) }
    }

    /// `Ledger.backup(to:compacting:)`.
    public func backup(to target: String, compacting: Bool) async throws(LedgerError) {
        try await run { ledger throws(LedgerError) in try ledger.backup(to: target, compacting: compacting) }
    }

    /// `Ledger.statistics()`.
    public func statistics() async throws(LedgerError) -> LedgerStatistics {
        try await run { ledger throws(LedgerError) in try ledger.statistics() }
    }
}
