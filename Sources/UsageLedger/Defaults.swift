import Logging

// The library's defaults and limits as named constants, so that the command-line tool (and any other
// front end) states none of its own: it shows and applies these.

extension CompactionOptions {
    /// The default age, in days, beyond which events are candidates for pruning: 31.
    public static let defaultCutoffAgeDays = 31
    /// The default age, in days, beyond which hourly snapshots are dropped: 400.
    public static let defaultSnapshotRetentionDays = 400
    /// The default number of events pruned, about, per write transaction: 2,000.
    public static let defaultBatchSize = 2_000
}

extension Ledger {
    /// The default number of running resources one rollup transaction folds: 1,000.
    public static let defaultRollupBatchSize = 1000
    /// The longest sensible rollup grace: one year (366 days). A longer grace would leave every hour of
    /// the retained history open.
    public static let maximumRollupGraceMicroseconds: Int64 = 366 * 86_400 * 1_000_000
    /// The default number of events one `events(after:limit:)` page holds in the command-line tool: 1,000.
    public static let defaultPageSize = 1000
    /// The default period of `usage(_:from:to:granularity:groupByResource:)` rows: the whole interval.
    public static let defaultUsageGranularity = UsageGranularity.total
}

extension NDJSONIngest {
    /// The default number of events per write transaction: 20,000. A transaction's cost is mostly the
    /// pages it dirties and its fsync, so large ones amortize both (an import of 300k events commits 15
    /// times, not 300); `--batch-size` still gives small ones to whoever wants them.
    public static let defaultBatchSize = 20_000
    /// The batch sizes an ingest accepts: 1 to 100,000 events per write transaction.
    public static let batchSizes: ClosedRange<Int> = 1...100_000
    /// The default longest line accepted: 1 MiB.
    public static let defaultMaximumLineBytes = 1 << 20
}

extension LedgerOptions {
    /// A logger that writes the ledger's messages of level `info` and above to standard error, one line
    /// each: what `usage-ledger --verbose` logs to. Assign it to `logger`.
    ///
    /// - Parameter label: the label the log lines carry.
    public static func standardErrorLogger(label: String = "usage-ledger") -> Logger {
        var logger = Logger(label: label, factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .info
        return logger
    }
}
