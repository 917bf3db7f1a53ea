import Foundation
import Testing
@testable import UsageLedger

/// `usage-ledger-export` against a real PostgreSQL server (a throwaway cluster per test), as a process.
@Suite("Export to PostgreSQL", .serialized)
struct ExportTests {
    static let now = ["--now", "2026-11-24T12:00:00Z"]

    /// A ledger of `resources` resources of 4 owners over November 2026: starts, scalings, stops and
    /// adjustments, rolled up to the test clock.
    @discardableResult
    static func makeLedger(
        _ dir: TemporaryDirectory, name: String = "ledger", resources: Int = 24, prefix: String = "r"
    ) throws -> String {
        let ledger = try openLedger(dir, name: name)
        var events: [UsageEvent] = []
        for n in 0..<resources {
            let r = "app/\(prefix)\(n)", owner = "org-\(n % 4)"
            let day = 1 + n % 10
            events += [
                event(
                    .started, "\(prefix)\(n)-1", r, owner: owner, at: "2026-11-\(pad(day))T03:20:00Z",
                    footprint: ["instances": 1, "memory_mb": 256]),
                event(
                    .started, "\(prefix)\(n)-2", r, owner: owner, at: "2026-11-\(pad(day + 2))T07:45:10Z",
                    footprint: ["instances": Int64(2 + n % 3), "memory_mb": 512]),
                event(
                    .adjustment, "\(prefix)\(n)-3", r, owner: owner, at: "2026-11-\(pad(day + 3))T01:00:00Z",
                    deltas: ["bytes": Int64(1000 * n) - 5000]),
            ]
            if n % 3 == 0 {
                events.append(
                    event(.stopped, "\(prefix)\(n)-4", r, owner: owner, at: "2026-11-\(pad(day + 5))T12:00:01Z"))
            }
        }
        _ = try ledger.append(contentsOf: events)
        _ = try ledger.rollUp(now: testNow)
        return dir.child(name)
    }

    static func pad(_ day: Int) -> String { day < 10 ? "0\(day)" : "\(day)" }

    /// Exact decimal seconds ("1453.583948") as microseconds.
    static func microseconds(_ decimal: String) -> Int64 {
        let parts = decimal.split(separator: ".", omittingEmptySubsequences: false)
        let fraction = parts.count > 1 ? String(parts[1]) : ""
        let sign: Int64 = decimal.hasPrefix("-") ? -1 : 1
        let whole = abs(Int64(parts[0]) ?? 0)
        return sign * (whole * 1_000_000 + (Int64(fraction.padding(toLength: 6, withPad: "0", startingAt: 0)) ?? 0))
    }

    /// Every (resource, hour) the CLI's `usage --group-by resource --granularity hour` gives for each owner
    /// up to the ledger's watermark, as "resource@hour" → "running;meters;adjustments".
    static func expectedHours(_ db: String) throws -> [String: String] {
        var expected: [String: String] = [:]
        let watermark = try Ledger(path: db).watermark()?.rfc3339 ?? ""
        for owner in 0..<4 {
            let result = try runCLI(
                [
                    "usage", "--db", db, "--owner", "org-\(owner)", "--from", "2026-11-01T00:00:00Z", "--to", watermark,
                    "--granularity", "hour", "--group-by", "resource", "--format", "json",
                ] + now)
            let document = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            for row in document?["rows"] as? [[String: Any]] ?? [] {
                let usage = (row["usage"] as? [String: String] ?? [:]).map {
                    ($0.key.replacingOccurrences(of: "_seconds", with: ""), microseconds($0.value))
                }
                let adjustments = (row["adjustments"] as? [String: String] ?? [:]).map {
                    ($0.key, Int64($0.value) ?? 0)
                }
                let key = "\(row["resource"] as? String ?? "")@\(row["period_start"] as? String ?? "")"
                expected[key] = render(
                    running: microseconds(row["running_seconds"] as? String ?? "0"), usage, adjustments)
            }
        }
        return expected
    }

    static func render(running: Int64, _ meters: [(String, Int64)], _ adjustments: [(String, Int64)]) -> String {
        let m = meters.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        let a = adjustments.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        return "\(running);\(m);\(a)"
    }

    /// The cell's `usage_hourly` rows in the same form.
    static func exportedHours(_ cluster: PostgresCluster, cell: String) throws -> [String: String] {
        let rows = try cluster.query(
            """
            SELECT resource_type || '/' || resource_id, to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                running_us, meter_us::text, adjustments::text FROM usage_hourly WHERE cell = '\(cell)'
            """)
        var exported: [String: String] = [:]
        for row in rows {
            let fields = row.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            func pairs(_ json: String) -> [(String, Int64)] {
                let object = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: NSNumber] ?? [:]
                return object.map { ($0.key, $0.value.int64Value) }
            }
            exported["\(fields[0])@\(fields[1])"] = render(
                running: Int64(fields[2]) ?? -1, pairs(fields[3]), pairs(fields[4]))
        }
        return exported
    }

    /// The cell's cursor, its events and their highest seq: all three equal when every commit was whole.
    static let consistency = """
        SELECT coalesce((SELECT seq FROM usage_cursors WHERE cell = 'eu-1'), 0), count(*), coalesce(max(seq), 0)
        FROM usage_events WHERE cell = 'eu-1'
        """

    /// Expects what commits of whole batches leave: the cell's cursor, its count of events and their
    /// highest seq all equal.
    static func expectWholeBatches(
        _ cluster: PostgresCluster, _ context: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let state = try cluster.value(consistency)
        let fields = state.split(separator: "|").map { Int($0) ?? -1 }
        #expect(
            fields.count == 3 && fields[0] == fields[1] && fields[1] == fields[2], "\(context): \(state)",
            sourceLocation: sourceLocation)
    }

    static func arguments(_ db: String, _ cluster: PostgresCluster, cell: String = "eu-1") -> [String] {
        ["--db", db, "--to", cluster.url, "--cell", cell, "--format", "json"]
    }

    @Test("an export writes every event and sealed hour once, says it created its tables; a rerun adds nothing")
    func exportAndRerun() throws {
        let cluster = try PostgresCluster()
        let dir = try TemporaryDirectory()
        let db = try Self.makeLedger(dir)
        let first = try runExport(Self.arguments(db, cluster))
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stderr.contains("created tables usage_events, usage_cursors, usage_hourly, usage_gaps"))
        let events = try Ledger(path: db).events(after: 0, limit: 10_000).events
        #expect(first.stdout.hasPrefix(#"{"cell":"eu-1","events":\#(events.count),"hours":"#), "\(first.stdout)")
        #expect(
            try cluster.value("SELECT count(*), min(seq), max(seq) FROM usage_events")
                == "\(events.count)|1|\(events.count)")
        #expect(try cluster.value("SELECT seq FROM usage_cursors WHERE cell = 'eu-1'") == "\(events.count)")
        let sample = try cluster.value(
            """
            SELECT id, kind, owner, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                footprint::text, deltas IS NULL, reason IS NULL FROM usage_events WHERE seq = 2
            """)
        #expect(sample == #"r0-2|started|org-0|2026-11-03T07:45:10.000000|{"instances": 2, "memory_mb": 512}|t|t"#)
        let expected = try Self.expectedHours(db)
        #expect(expected.count > 1000)
        #expect(try Self.exportedHours(cluster, cell: "eu-1") == expected)
        let rerun = try runExport(Self.arguments(db, cluster))
        #expect(rerun.status == 0 && !rerun.stderr.contains("created tables"), "\(rerun.stderr)")
        #expect(rerun.stdout.hasPrefix(#"{"cell":"eu-1","events":0,"hours":0,"gaps":0,"#), "\(rerun.stdout)")
    }

    @Test("SIGKILL at any moment of an export leaves PostgreSQL consistent; the rerun has no gap and no double")
    func exportKilledAndRerun() throws {
        let cluster = try PostgresCluster()
        let dir = try TemporaryDirectory()
        let db = try Self.makeLedger(dir, resources: 400)
        let total = try Ledger(path: db).events(after: 0, limit: 10_000).events.count
        // The tables exist before the first kill (a warm-up cell), so every round can be inspected.
        let warmUp = try Self.makeLedger(dir, name: "warm-up", resources: 1)
        #expect(try runExport(Self.arguments(warmUp, cluster, cell: "warm-up")).status == 0)
        for round in 0..<6 {
            let (process, _, _) = try startExport(Self.arguments(db, cluster) + ["--batch-size", "25"])
            usleep(UInt32(40_000 + round * 60_000))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            // Whatever committed is whole: the events up to the cursor, none beyond it.
            try Self.expectWholeBatches(cluster, "round \(round)")
        }
        let rerun = try runExport(Self.arguments(db, cluster))
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(
            try cluster.value("SELECT count(*), count(DISTINCT seq), max(seq) FROM usage_events WHERE cell = 'eu-1'")
                == "\(total)|\(total)|\(total)")
        #expect(try Self.exportedHours(cluster, cell: "eu-1") == Self.expectedHours(db))
    }

    @Test("two cells export into one database without touching each other's rows")
    func twoCells() throws {
        let cluster = try PostgresCluster()
        let dir = try TemporaryDirectory()
        let a = try Self.makeLedger(dir, name: "a")
        let b = try Self.makeLedger(dir, name: "b", resources: 10, prefix: "b")
        #expect(try runExport(Self.arguments(a, cluster, cell: "a")).status == 0)
        #expect(try runExport(Self.arguments(b, cluster, cell: "b")).status == 0)
        let before = try cluster.query("SELECT * FROM usage_events WHERE cell = 'b' ORDER BY seq")
        try openLedger(dir, name: "a")
            .append(event(.stopped, "a-late", "app/r1", owner: "org-1", at: "2026-11-20T00:00:00Z"))
        #expect(try runExport(Self.arguments(a, cluster, cell: "a")).status == 0)
        #expect(try cluster.query("SELECT * FROM usage_events WHERE cell = 'b' ORDER BY seq") == before)
        let (countA, countB) = (
            try Ledger(path: a).events(after: 0, limit: 10_000).events.count,
            try Ledger(path: b).events(after: 0, limit: 10_000).events.count
        )
        #expect(
            try cluster.value("SELECT string_agg(cell || ':' || seq, ',' ORDER BY cell) FROM usage_cursors")
                == "a:\(countA),b:\(countB)")
        #expect(try Self.exportedHours(cluster, cell: "a") == Self.expectedHours(a))
        #expect(try Self.exportedHours(cluster, cell: "b") == Self.expectedHours(b))
    }

    @Test(
        "backslashes and quotes arrive byte for byte through COPY; a cursor set back by hand writes nothing twice"
    )
    func copyEscapesAndReset() throws {
        let cluster = try PostgresCluster()
        let dir = try TemporaryDirectory()
        let db = try Self.makeLedger(dir, resources: 3)
        let reason = #"refund \n for C:\temp "quoted" ü"#
        try openLedger(dir).append(
            UsageEvent(
                id: "odd-1", kind: .adjustment, resource: ResourceID(type: "app", id: "r1"), owner: "org-1",
                occurredAt: ts("2026-11-12T00:00:00Z"), deltas: ["bytes": -7], reason: reason,
                attributes: ["path": #"a\b "c" \\d"#, "tab": "x"]))
        let total = try Ledger(path: db).events(after: 0, limit: 10_000).events.count
        #expect(try runExport(Self.arguments(db, cluster)).status == 0)
        #expect(try cluster.value("SELECT reason FROM usage_events WHERE id = 'odd-1'") == reason)
        #expect(
            try cluster.value("SELECT attributes->>'path' FROM usage_events WHERE id = 'odd-1'") == #"a\b "c" \\d"#)
        // Rows already there (the cursor set back by hand): the batch keeps them, writes no second copy.
        _ = try cluster.query("UPDATE usage_cursors SET seq = 2 WHERE cell = 'eu-1'")
        let rerun = try runExport(Self.arguments(db, cluster))
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(rerun.stdout.hasPrefix(#"{"cell":"eu-1","events":0,"#), "\(rerun.stdout)")
        #expect(
            try cluster.value("SELECT count(*), count(DISTINCT seq), max(seq) FROM usage_events")
                == "\(total)|\(total)|\(total)")
        #expect(try cluster.value("SELECT seq FROM usage_cursors WHERE cell = 'eu-1'") == "\(total)")
    }

    @Test("a late event that corrects exported hours exports them again, emptied hours removed")
    func lateCorrection() throws {
        let cluster = try PostgresCluster()
        let dir = try TemporaryDirectory()
        let db = try Self.makeLedger(dir)
        #expect(try runExport(Self.arguments(db, cluster)).status == 0)
        let resource = "app/r1"
        let hoursBefore = try cluster.value("SELECT count(*) FROM usage_hourly WHERE resource_id = 'r1'")
        let ledger = try openLedger(dir)
        try ledger.append(event(.stopped, "late-stop", resource, owner: "org-1", at: "2026-11-10T00:30:00Z"))
        try ledger.append(
            event(
                .adjustment, "late-credit", "app/r2", owner: "org-2", at: "2026-11-05T10:15:00Z", deltas: ["bytes": -7])
        )
        let second = try runExport(Self.arguments(db, cluster))
        #expect(second.status == 0, "\(second.stderr)")
        #expect(try Self.exportedHours(cluster, cell: "eu-1") == Self.expectedHours(db))
        let hoursAfter = try cluster.value("SELECT count(*) FROM usage_hourly WHERE resource_id = 'r1'")
        #expect((Int(hoursAfter) ?? 0) < (Int(hoursBefore) ?? 0))
        #expect(
            try cluster.value("SELECT max(hour) AT TIME ZONE 'UTC' FROM usage_hourly WHERE resource_id = 'r1'")
                == "2026-11-10 00:00:00")
    }

    @Test("a cursor behind pruned events records the gap, exports what remains and exits 4; then goes on")
    func prunedGap() throws {
        let cluster = try PostgresCluster()
        let dir = try TemporaryDirectory()
        let db = try Self.makeLedger(dir)
        let compact = try runCLI(["compact", "--db", db, "--cutoff-age-days", "10"] + Self.now)
        #expect(compact.status == 0, "\(compact.stderr)")
        let ledger = try Ledger(path: db)
        let pruned = try #require(try ledger.events(after: 0, limit: 1).pruned)
        let remaining = try ledger.events(after: 0, limit: 10_000).events.count
        let first = try runExport(Self.arguments(db, cluster))
        #expect(first.status == 4)
        #expect(
            first.stderr.contains("(seq 0) predates events compaction pruned through seq \(pruned.throughSeq)"),
            "\(first.stderr)")
        #expect(
            try cluster.value("SELECT cell, after_seq, through_seq FROM usage_gaps") == "eu-1|0|\(pruned.throughSeq)")
        #expect(try cluster.value("SELECT count(*) FROM usage_events") == "\(remaining)")
        #expect(try Self.exportedHours(cluster, cell: "eu-1") == Self.expectedHours(db))
        let again = try runExport(Self.arguments(db, cluster))
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try cluster.value("SELECT count(*) FROM usage_gaps") == "1")
    }

    @Test("a wrong password, no server and a server gone mid-export exit 2 with a clear error, nothing half-done")
    func failures() throws {
        let cluster = try PostgresCluster()
        let dir = try TemporaryDirectory()
        let db = try Self.makeLedger(dir, resources: 400)
        let wrong = cluster.url.replacingOccurrences(of: cluster.password, with: "nope")
        let denied = try runExport(["--db", db, "--to", wrong, "--cell", "x"])
        #expect(denied.status == 2)
        #expect(denied.stderr.contains("password authentication failed for user \"postgres\""), "\(denied.stderr)")
        let nobody = try runExport([
            "--db", db, "--to", "postgresql://u:p@127.0.0.1:\(try PostgresCluster.freePort())/d", "--cell", "x",
        ])
        #expect(nobody.status == 2)
        #expect(
            nobody.stderr.contains("usage-ledger-export: PostgreSQL at postgresql://u@127.0.0.1:"), "\(nobody.stderr)")
        let bad = try runExport(["--db", db, "--to", "mysql://u@h/d", "--cell", "x"])
        #expect(bad.status == 2 && bad.stderr.contains("invalid --to"), "\(bad.stderr)")
        let (process, _, err) = try startExport(Self.arguments(db, cluster) + ["--batch-size", "10"])
        usleep(300_000)
        try cluster.stop()
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 2, "\(stderr)")
        #expect(stderr.contains("usage-ledger-export: PostgreSQL at "), "\(stderr)")
        try cluster.start()
        try Self.expectWholeBatches(cluster, "after the server went away")
    }

    @Test("--follow exports events as they arrive until SIGTERM, then exits 0 with its summary")
    func follow() throws {
        let cluster = try PostgresCluster()
        let dir = try TemporaryDirectory()
        let db = try Self.makeLedger(dir)
        let (process, out, err) = try startExport(
            Self.arguments(db, cluster) + ["--follow", "--interval", "0.2", "--no-hourly"])
        let ledger = try openLedger(dir)
        let before = try ledger.events(after: 0, limit: 10_000).events.count
        try ledger.append(started("followed", "app/new", owner: "org-9", at: "2026-11-24T11:00:00Z"))
        var seen = ""
        for _ in 0..<100 where seen != "\(before + 1)" {
            usleep(100_000)
            seen = (try? cluster.value("SELECT count(*) FROM usage_events")) ?? ""
        }
        #expect(seen == "\(before + 1)")
        kill(process.processIdentifier, SIGTERM)
        let result = finish(process, out, err)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(
            result.stdout.hasPrefix(#"{"cell":"eu-1","events":\#(before + 1),"hours":0,"gaps":0,"#), "\(result.stdout)")
        #expect(try cluster.value("SELECT count(*) FROM usage_hourly") == "0")
    }
}
