import Foundation
import InMemoryLogging
import Logging
import Metrics
import MetricsTestKit
import Testing
@testable import UsageLedger

/// The process's metrics backend for the tests: bootstrapped once; each test's ledger has a dimension of its own.
let testMetrics: TestMetrics = {
    let metrics = TestMetrics()
    MetricsSystem.bootstrap(metrics)
    return metrics
}()

@Suite("Observability: logs, metrics and stats")
struct ObservabilityTests {
    @Test("appends, duplicates, rejections, rollup and compaction are counted in metrics and in stats, and logged")
    func countedAndLogged() throws {
        let metrics = testMetrics
        let dir = try TemporaryDirectory()
        let tag = [("test", dir.path)]
        let logs = InMemoryLogHandler()
        let ledger = try openLedger(dir) {
            $0.metricsDimensions = tag
            $0.logger = Logger(label: "test", factory: { _ in logs })
        }
        let first = try ledger.append(contentsOf: [
            event(.started, "e1", "app/a", at: "2026-10-01T10:00:00Z", footprint: ["instances": 1]),
            event(.stopped, "e2", "app/a", at: "2026-10-01T12:00:00Z"),
            event(.started, "e3", "app/b", at: "2026-11-20T10:00:00Z", footprint: ["instances": 2]),
        ])
        #expect(first.appendedCount == 3)
        let second = try ledger.append(contentsOf: [
            event(.started, "e1", "app/a", at: "2026-10-01T10:00:00Z", footprint: ["instances": 1]),  // a retry
            event(.started, "e1", "app/a", at: "2026-10-01T10:00:01Z", footprint: ["instances": 1]),  // id_conflict
            event(.started, "e4", "app/b", owner: "org-2", at: "2026-11-20T11:00:00Z"),  // owner_mismatch
            event(.started, "e5", "app/c", at: "2026-12-20T11:00:00Z"),  // in_future
        ])
        #expect(second.duplicateCount == 1 && second.rejections.count == 3)
        _ = try ledger.rollUp(now: testNow)
        let compaction = try ledger.compact()
        #expect(compaction.prunedCount == 2)

        #expect(try metrics.expectCounter("usage_ledger_events_appended_total", tag).totalValue == 3)
        #expect(try metrics.expectCounter("usage_ledger_duplicates_total", tag).totalValue == 1)
        for code in ["id_conflict", "owner_mismatch", "in_future"] {
            #expect(
                try metrics.expectCounter("usage_ledger_rejections_total", tag + [("code", code)]).totalValue == 1,
                "\(code)")
        }
        #expect(try metrics.expectCounter("usage_ledger_compaction_pruned_total", tag).totalValue == 2)
        #expect(try metrics.expectCounter("usage_ledger_resource_hours_rolled_total", tag).totalValue > 0)
        // The watermark is floor_to_hour(now - 5 min grace) = 11:00, an hour before the clock.
        #expect(try metrics.expectGauge("usage_ledger_rollup_lag_seconds", tag).lastValue == 3600)
        #expect(try metrics.expectGauge("usage_ledger_map_used_bytes", tag).lastValue ?? 0 > 0)

        // stats reports the same figures, kept in the ledger across processes.
        let stats = try ledger.statistics()
        #expect(stats.duplicates == 1)
        #expect(stats.rejectedByCode == ["id_conflict": 1, "owner_mismatch": 1, "in_future": 1])
        #expect(stats.prunedEvents == 2)
        #expect(stats.rollupLagMicroseconds == 3_600_000_000)
        #expect(stats.horizon == ts("2026-10-24T12:00:00Z"))
        let cli = try runCLI([
            "stats", "--db", dir.child("ledger"), "--format", "json", "--now", "2026-11-24T12:00:00Z",
        ])
        #expect(
            cli.stdout.contains(
                #""duplicates":1,"rejected":{"id_conflict":1,"in_future":1,"owner_mismatch":1},"pruned_events":2"#),
            "\(cli.stdout)")
        #expect(cli.stdout.contains(#""rollup_lag_seconds":3600"#))

        let messages = logs.entries.map { "\($0.level) \($0.message)" }
        #expect(messages.contains("info rolled up to 2026-11-24T11:00:00Z"), "\(messages)")
        #expect(messages.contains("info compacted to horizon 2026-10-24T12:00:00Z"), "\(messages)")
    }

    @Test("the CLI is quiet by default and logs to standard error with --verbose")
    func verboseFlag() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        _ = try runCLI(["init", "--db", db])
        let quiet = try runCLI(["rollup", "--db", db, "--now", "2026-11-24T12:00:00Z"])
        #expect(quiet.status == 0 && quiet.stderr.isEmpty, "\(quiet.stderr)")
        let loud = try runCLI(["compact", "--db", db, "--now", "2026-11-24T12:00:00Z", "--verbose"])
        #expect(loud.status == 0)
        #expect(
            loud.stderr.contains("info usage-ledger:") && loud.stderr.contains("compacted to horizon"), "\(loud.stderr)"
        )
    }
}
