import LMDBStorage
import LedgerCore
import Logging
import Metrics
#if canImport(Glibc)
import Glibc
#endif

/// The metrics a ledger reports through swift-metrics. Metric objects are made once per ledger, since
/// looking them up in the backend on every append would cost more than the append's bookkeeping.
///
/// | Label | Kind | Meaning |
/// |---|---|---|
/// | `usage_ledger_events_appended_total` | counter | events recorded (committed) |
/// | `usage_ledger_duplicates_total` | counter | submissions of an id already recorded with the same payload |
/// | `usage_ledger_rejections_total` (dimension `code`) | counter | events refused, by `LedgerError.code` |
/// | `usage_ledger_append_batch_seconds` | timer | one `append(contentsOf:)`, commit included |
/// | `usage_ledger_append_commits_total` | counter | write transactions that committed appends (one per group) |
/// | `usage_ledger_rollup_lag_seconds` | gauge | the ledger's clock minus the rollup watermark |
/// | `usage_ledger_resource_hours_rolled_total` | counter | hourly rows written by rollup |
/// | `usage_ledger_compaction_pruned_total` | counter | events compaction removed |
/// | `usage_ledger_map_used_bytes`, `usage_ledger_map_size_bytes` | gauge | the data file's use and map size |
final class LedgerMetrics: Sendable {
    let dimensions: [(String, String)]
    let appended: Counter
    let duplicates: Counter
    let appendTimer: Metrics.Timer
    let appendCommits: Counter
    let rollupLag: Gauge
    let resourceHours: Counter
    let pruned: Counter
    let mapUsed: Gauge
    let mapSize: Gauge
    private let rejections = Locked<[String: Counter]>([:])

    init(dimensions: [(String, String)]) {
        self.dimensions = dimensions
        appended = Counter(label: "usage_ledger_events_appended_total", dimensions: dimensions)
        duplicates = Counter(label: "usage_ledger_duplicates_total", dimensions: dimensions)
        appendCommits = Counter(label: "usage_ledger_append_commits_total", dimensions: dimensions)
        appendTimer = Metrics.Timer(
            label: "usage_ledger_append_batch_seconds", dimensions: dimensions, preferredDisplayUnit: .milliseconds)
        rollupLag = Gauge(label: "usage_ledger_rollup_lag_seconds", dimensions: dimensions)
        resourceHours = Counter(label: "usage_ledger_resource_hours_rolled_total", dimensions: dimensions)
        pruned = Counter(label: "usage_ledger_compaction_pruned_total", dimensions: dimensions)
        mapUsed = Gauge(label: "usage_ledger_map_used_bytes", dimensions: dimensions)
        mapSize = Gauge(label: "usage_ledger_map_size_bytes", dimensions: dimensions)
    }

    /// Counts one refused event under its code.
    func rejected(_ code: String) {
        let counter = rejections.withLock { table in
            if let counter = table[code] { return counter }
            let counter = Counter(label: "usage_ledger_rejections_total", dimensions: dimensions + [("code", code)])
            table[code] = counter
            return counter
        }
        counter.increment()
    }

    func recordAppend(_ result: AppendResult, nanoseconds: UInt64) {
        if result.appendedCount > 0 { appended.increment(by: result.appendedCount) }
        if result.duplicateCount > 0 { duplicates.increment(by: result.duplicateCount) }
        for (_, error) in result.rejections { rejected(error.code) }
        appendTimer.recordNanoseconds(Int64(clamping: nanoseconds))
    }

    func recordMap(_ statistics: EnvironmentStatistics) {
        mapUsed.record(statistics.usedBytes)
        mapSize.record(statistics.mapSize)
    }

    func recordLag(now: Timestamp, watermark: Timestamp?) {
        guard let watermark else { return }
        rollupLag.record(Ledger.lag(now: now, since: watermark) / 1_000_000)
    }
}

/// A monotonic clock reading for durations (not the ledger's clock, which may be simulated).
func monotonicNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// Called by maintenance loops between write transactions. LMDB's writer lock is a mutex, not a queue:
/// a loop that commits and begins again at once usually wins it back, and an appender waiting for it
/// starved through whole compactions (the benchmark saw 0.5 s). A millisecond's pause lets it in.
func yieldToWaitingWriters() {
    usleep(1000)
}

extension Ledger {
    /// Reports the map's size and use after a write (nothing once the handle is closed).
    func recordMapMetrics() {
        guard let environment = try? environment else { return }
        metrics.recordMap(environment.statistics())
    }
}
