import Foundation
import Testing
@testable import UsageLedger

@Suite("Projection commands, as real processes")
struct ProjectionCLITests {
    static let scaleUp = [
        #"{"id":"s1","kind":"started","resource":{"type":"app","id":"a","owner":"org-1"},"#
            + #""occurred_at":"2026-11-01T10:00:00Z","footprint":{"instances":1,"memory_mb":512}}"#,
        #"{"id":"s2","kind":"started","resource":{"type":"app","id":"a","owner":"org-1"},"#
            + #""occurred_at":"2026-11-01T10:30:00Z","footprint":{"instances":2,"memory_mb":1024}}"#,
        #"{"id":"s3","kind":"started","resource":{"type":"task","id":"t","owner":"org-1"},"#
            + #""occurred_at":"2026-11-01T10:00:00.5Z","footprint":{"memory_mb":256}}"#,
        #"{"id":"s4","kind":"stopped","resource":{"type":"task","id":"t","owner":"org-1"},"#
            + #""occurred_at":"2026-11-01T10:00:01Z"}"#,
        #"{"id":"s5","kind":"stopped","resource":{"type":"task","id":"never","owner":"org-1"},"#
            + #""occurred_at":"2026-11-01T10:00:01Z"}"#,
    ].joined(separator: "\n")

    @Test("current, usage, rollup, verify and rebuild print exact figures")
    func projectionCommands() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        let now = ["--now", "2026-11-01T12:00:00Z"]
        let append = try runCLI(["append", "-", "--db", db] + now, stdin: Self.scaleUp)
        #expect(append.status == 0, "\(append.stderr)")
        #expect(append.stdout.contains(#""unmatched_stops":1"#))

        let current = try runCLI(["current", "--db", db, "--owner", "org-1"])
        #expect(
            current.stdout
                == #"{"running":1,"totals":{"instances":"2","memory_mb":"1024"},"resources":[{"type":"app","id":"a","#
                + #""owner":"org-1","running":true,"run_started_at":"2026-11-01T10:00:00Z","#
                + #""footprint_since":"2026-11-01T10:30:00Z","footprint":{"instances":2,"memory_mb":1024},"#
                + #""attributes":{}}]}"#
                + "\n")

        let usage = try runCLI(
            [
                "usage", "--db", db, "--owner", "org-1", "--from", "2026-11-01T10:00:00Z", "--to",
                "2026-11-01T11:00:00Z",
                "--group-by", "resource",
            ] + now)
        #expect(usage.status == 0, "\(usage.stderr)")
        #expect(
            usage.stdout
                == #"{"from":"2026-11-01T10:00:00Z","to":"2026-11-01T11:00:00Z","granularity":"total","#
                + #""rows":[{"period_start":"2026-11-01T10:00:00Z","period_end":"2026-11-01T11:00:00Z","#
                + #""resource":"app/a","running_seconds":"3600","usage":{"instances_seconds":"5400","#
                + #""memory_mb_seconds":"2764800"},"adjustments":{}},{"period_start":"2026-11-01T10:00:00Z","#
                + #""period_end":"2026-11-01T11:00:00Z","resource":"task/t","running_seconds":"0.5","#
                + #""usage":{"memory_mb_seconds":"128"},"adjustments":{}}]}"#
                + "\n")

        // Capped at the clock: asking until tomorrow at 10:45 gives 45 minutes.
        let capped = try runCLI([
            "usage", "--db", db, "--resource", "app/a", "--from", "2026-11-01T10:00:00Z", "--to",
            "2026-11-02T00:00:00Z",
            "--now", "2026-11-01T10:45:00Z",
        ])
        #expect(capped.stdout.contains(#""to":"2026-11-01T10:45:00Z""#))
        #expect(capped.stdout.contains(#""running_seconds":"2700""#))

        let rollup = try runCLI(["rollup", "--db", db, "--now", "2026-11-01T12:04:59Z"])
        #expect(rollup.stdout.contains(#""watermark":"2026-11-01T11:00:00Z""#), "\(rollup.stdout)")
        let again = try runCLI(["rollup", "--db", db, "--now", "2026-11-01T12:04:59Z"])
        #expect(again.stdout.contains(#""resources_rolled":0"#))

        let verify = try runCLI(["verify", "--db", db])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains(#""consistent":true"#))

        let stats = try runCLI(["stats", "--db", db, "--now", "2026-11-01T12:00:00Z"])
        #expect(
            stats.stdout.contains(
                #""unmatched_stops":1,"duplicates":0,"rejected":{},"pruned_events":0,"#
                    + #""watermark":"2026-11-01T11:00:00Z","rollup_lag_seconds":3600,"rollup_in_progress_to":null,"#
                    + #""horizon":null"#
            ), "\(stats.stdout)")

        // Tamper with a projection: verify fails with status 1 and says where; rebuild repairs it.
        do {
            let ledger = try Ledger(path: db)
            let totals = ledger.schema.ownerTotals
            try ledger.environment.write { txn in
                let cursor = try txn.writeCursor(totals)
                if try cursor.reading.first() != nil { try cursor.deleteCurrent() }
            }
        }
        let broken = try runCLI(["verify", "--db", db])
        #expect(broken.status == 1)
        #expect(broken.stderr.contains("verify: owner totals"))
        #expect(try runCLI(["rebuild", "--db", db]).status == 0)
        #expect(try runCLI(["verify", "--db", db]).status == 0)
    }

    @Test("reconcile through the CLI is idempotent by key")
    func reconcileCommand() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        let arguments = [
            "reconcile", "--db", db, "--resource", "job/j", "--owner", "org-1", "--totals", #"{"network_bytes":123}"#,
            "--at", "2026-11-01T10:00:00Z", "--key", "hourly-10", "--now", "2026-11-01T12:00:00Z",
        ]
        let first = try runCLI(arguments)
        #expect(
            first.stdout == #"{"outcome":"appended","seq":1,"deltas":{"network_bytes":123}}"# + "\n", "\(first.stderr)")
        let retry = try runCLI(arguments)
        #expect(retry.stdout == #"{"outcome":"already_recorded","seq":1}"# + "\n")
        let bad = try runCLI([
            "reconcile", "--db", db, "--resource", "job/j", "--owner", "org-1", "--totals", #"{"network_bytes":1.5}"#,
            "--at", "2026-11-01T10:00:00Z", "--key", "k",
        ])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("totals.network_bytes: must be an integer"))
    }
}
