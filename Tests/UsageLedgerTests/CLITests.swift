import Foundation
import Testing
@testable import UsageLedger

@Suite("The usage-ledger command, as real processes")
struct CLITests {
    static let allKinds = EventCodecTests.examples.joined(separator: "\n") + "\n"

    @Test("every kind round-trips through append and events, and events validate against the schema")
    func roundTrip() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        let input = try dir.file("in.ndjson", Self.allKinds)
        let append = try runCLI(["append", input, "--db", db, "--now", "2026-11-24T12:00:00Z"])
        #expect(append.status == 0, "\(append.stderr)")
        #expect(
            append.stdout
                == #"{"lines":4,"appended":4,"duplicates":0,"rejected":0,"unmatched_stops":0,"first_seq":1,"#
                + #""last_seq":4}"#
                + "\n")

        let events = try runCLI(["events", "--after", "0", "--limit", "10", "--db", db])
        #expect(events.status == 0)
        let lines = events.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 4)
        for (index, line) in lines.enumerated() {
            let prefix = #"{"seq":\#(index + 1),"recorded_at":"2026-11-24T12:00:00Z","#
            #expect(line.hasPrefix(prefix))
            #expect("{" + line.dropFirst(prefix.count) == EventCodecTests.examples[index])
        }
        #expect(
            try runCLI(["events", "--after", "3", "--limit", "10", "--db", db]).stdout.split(separator: "\n").count == 1
        )

        let output = try dir.file("out.ndjson", events.stdout)
        let validation = try runProcess(
            "/usr/bin/env",
            [
                "python3", repositoryRoot + "/Schemas/validate.py",
                repositoryRoot + "/Schemas/usage-event.v1.schema.json", output,
            ])
        #expect(validation.status == 0, "\(validation.stdout)\(validation.stderr)")
        #expect(validation.stdout.contains("4 events checked, 0 errors"))
    }

    @Test("the schema really rejects events the ledger would reject")
    func schemaRejects() throws {
        let dir = try TemporaryDirectory()
        let bad = [
            #"{"id":"e","kind":"started","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-11-01T10:00:00Z"}"#,
            #"{"id":"e","kind":"adjustment","resource":{"type":"App","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-11-01T10:00:00Z","deltas":{"x":1}}"#,
            #"{"id":"e","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-11-01T10:00:00Z","colour":"red"}"#,
        ]
        let file = try dir.file("bad.ndjson", bad.joined(separator: "\n"))
        let validation = try runProcess(
            "/usr/bin/env",
            [
                "python3", repositoryRoot + "/Schemas/validate.py",
                repositoryRoot + "/Schemas/usage-event.v1.schema.json", file,
            ])
        #expect(validation.status == 1, "\(validation.stdout)\(validation.stderr)")
        for line in 1...3 { #expect(validation.stdout.contains("line \(line):")) }
    }

    @Test("rejected lines go to stderr with line, id, code and message; the rest commits; exit status 3")
    func rejections() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        let lines = [
            "\u{FEFF}" + EventCodecTests.examples[0] + "\r",
            "",
            #"{"id":"bad-1","kind":"started","resource":{"type":"app","id":"x","owner":"o"},"#
                + #""occurred_at":"2026-11-01T10:00:00Z"}"#,
            "{not json",
            EventCodecTests.examples[1],
            #"{"id":"e-1001","kind":"stopped","resource":{"type":"app","id":"9f3c","owner":"org-7"},"#
                + #""occurred_at":"2026-11-01T10:00:00Z"}"#,
            #"{"id":"future","kind":"stopped","resource":{"type":"app","id":"9f3c","owner":"org-7"},"#
                + #""occurred_at":"2026-11-24T12:06:00Z"}"#,
            #"{"id":"owner","kind":"stopped","resource":{"type":"app","id":"9f3c","owner":"org-8"},"#
                + #""occurred_at":"2026-11-01T11:00:00Z"}"#,
        ]
        let input = try dir.file("mixed.ndjson", lines.joined(separator: "\n"))
        let result = try runCLI(["append", input, "--db", db, "--now", "2026-11-24T12:00:00Z"])
        #expect(result.status == 3)
        #expect(
            result.stdout
                == #"{"lines":8,"appended":2,"duplicates":0,"rejected":5,"unmatched_stops":0,"first_seq":1,"#
                + #""last_seq":2}"#
                + "\n")
        let errors = result.stderr.split(separator: "\n").map(String.init)
        #expect(
            errors == [
                "line 3: id bad-1: invalid_field: footprint: is required on 'started' events (it may be {})",
                "line 4: invalid_json: not a JSON object: expected a string key at byte 2",
                "line 6: id e-1001: id_conflict: id: 'e-1001' was already recorded as seq 1 with a different payload",
                "line 7: id future: in_future: occurred_at: 2026-11-24T12:06:00Z is more than 300 s after the "
                    + "ledger's clock (2026-11-24T12:00:00Z)",
                "line 8: id owner: owner_mismatch: resource.owner: app/9f3c belongs to 'org-7', not 'org-8'",
            ])
    }

    @Test("a retry after a restart, from another process, records nothing twice")
    func duplicatesAcrossProcesses() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        let first = try runCLI(["append", "-", "--db", db, "--now", "2026-11-24T12:00:00Z"], stdin: Self.allKinds)
        #expect(first.status == 0)
        let second = try runCLI(["append", "-", "--db", db, "--now", "2026-11-24T13:00:00Z"], stdin: Self.allKinds)
        #expect(second.status == 0)
        #expect(
            second.stdout
                == #"{"lines":4,"appended":0,"duplicates":4,"rejected":0,"unmatched_stops":0,"first_seq":null,"#
                + #""last_seq":null}"#
                + "\n")
        let stats = try runCLI(["stats", "--db", db])
        #expect(
            stats.stdout.contains(
                #""events_appended":4,"events_stored":4,"events_by_kind":{"started":1,"was_running":1,"stopped":1,"#
                    + #""adjustment":1}"#))
    }

    @Test("two processes appending at once, with overlapping ids, lose and duplicate nothing; a reader runs meanwhile")
    func concurrentProcesses() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        #expect(try runCLI(["init", "--db", db]).status == 0)
        func lines(_ range: ClosedRange<Int>) -> String {
            range.map { n in
                #"{"id":"c-\#(n)","kind":"started","resource":{"type":"task","id":"t-\#(n)","#
                    + #""owner":"org-\#(n % 3)"},"occurred_at":"2026-11-01T10:00:00Z","footprint":{"memory_mb":\#(n)}}"#
            }.joined(separator: "\n") + "\n"
        }
        let fileA = try dir.file("a.ndjson", lines(1...6000))
        let fileB = try dir.file("b.ndjson", lines(3001...9000))
        let a = try startCLI(["append", fileA, "--db", db, "--batch-size", "100", "--now", "2026-11-24T12:00:00Z"])
        let b = try startCLI(["append", fileB, "--db", db, "--batch-size", "100", "--now", "2026-11-24T12:00:00Z"])
        var readerRuns = 0
        while a.0.isRunning || b.0.isRunning {
            let stats = try runCLI(["stats", "--db", db])
            #expect(stats.status == 0, "\(stats.stderr)")
            readerRuns += 1
        }
        let resultA = finish(a.0, a.1, a.2), resultB = finish(b.0, b.1, b.2)
        #expect(resultA.status == 0, "\(resultA.stderr)")
        #expect(resultB.status == 0, "\(resultB.stderr)")
        #expect(readerRuns > 0)

        let ledger = try Ledger(path: db)
        let all = try ledger.events(after: 0, limit: 100_000).events
        #expect(all.count == 9000)
        #expect(all.map(\.seq) == Array(1...9000))
        #expect(Set(all.map(\.event.id)).count == 9000)
    }

    @Test("history prints a resource's events in timeline order; --db can come from USAGE_LEDGER_DB")
    func history() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        let input = [
            #"{"id":"h3","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-11-01T12:00:00Z"}"#,
            #"{"id":"h1","kind":"started","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-11-01T10:00:00Z","footprint":{}}"#,
            #"{"id":"h2","kind":"adjustment","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-11-01T11:00:00Z","deltas":{"bytes":-5}}"#,
        ].joined(separator: "\n")
        #expect(
            try runCLI(
                ["append", "-", "--now", "2026-11-24T12:00:00Z"], stdin: input, environment: ["USAGE_LEDGER_DB": db]
            ).status == 0)
        let history = try runCLI(["history", "--resource", "app/a"], environment: ["USAGE_LEDGER_DB": db])
        #expect(history.status == 0)
        let ids = history.stdout.split(separator: "\n").compactMap { line in
            (try? EventJSON.decode(String(line)))?.id
        }
        #expect(ids == ["h1", "h2", "h3"])
    }

    @Test("usage and fatal errors exit with status 2 and say what is wrong")
    func usageErrors() throws {
        let dir = try TemporaryDirectory()
        let missingDB = try runCLI(["events"], environment: ["USAGE_LEDGER_DB": ""])
        #expect(missingDB.status == 2)
        let badNow = try runCLI(["append", "--db", dir.child("l"), "--now", "yesterday"], stdin: "")
        #expect(badNow.status == 2)
        #expect(badNow.stderr.contains("--now: 'yesterday' is not an RFC 3339 timestamp"))
        let noLedger = try runCLI(["events", "--db", dir.child("nothing-here")])
        #expect(noLedger.status == 2)
        #expect(noLedger.stderr.contains("cannot_open"))
        let badResource = try runCLI(["history", "--db", dir.child("l"), "--resource", "no-slash"])
        #expect(badResource.status == 2)
        #expect(badResource.stderr.contains("--resource must be TYPE/ID"))
    }

    @Test("stats reports counts, database sizes, map use and reader slots")
    func stats() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        _ = try runCLI(["append", "-", "--db", db, "--now", "2026-11-24T12:00:00Z"], stdin: Self.allKinds)
        let stats = try runCLI(["stats", "--db", db, "--format", "json"])
        #expect(stats.status == 0)
        guard
            case .object(let members) = try JSONParser.parse(
                stats.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            Issue.record("stats is not a JSON object")
            return
        }
        let keys = members.map(\.key)
        #expect(
            keys == [
                "format_version", "events_appended", "events_stored", "events_by_kind", "resources", "next_seq",
                "unmatched_stops", "duplicates", "rejected", "pruned_events", "watermark", "rollup_lag_seconds",
                "rollup_in_progress_to", "horizon", "snapshots_retained_from", "databases", "map", "space", "readers",
            ])
        #expect(members.first { $0.key == "resources" }?.value == .number("3"))
        let table = try runCLI(["stats", "--db", db, "--format", "table"])
        #expect(
            table.stdout.contains(
                "format \(Ledger.formatVersion), 4 events appended over its life, 4 stored, 3 resources, next seq 5"))
    }

    @Test("backup writes a consistent copy that opens as the same ledger")
    func backup() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        _ = try runCLI(["append", "-", "--db", db, "--now", "2026-11-24T12:00:00Z"], stdin: Self.allKinds)
        let copy = dir.child("copy")
        #expect(try runCLI(["backup", "--db", db, "--to", copy, "--compact"]).status == 0)
        let events = try runCLI(["events", "--db", copy])
        #expect(events.stdout.split(separator: "\n").count == 4)
    }

    @Test(
        "the demo rolls up, compacts and reseeds; a rerun starts afresh with the same figures, in its own directory"
    )
    func demo() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("demo")
        let first = try runCLI(["demo", "--db", db, "--days", "34"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("retried the last batch of"))
        #expect(first.stdout.contains("1 stopped as missing"))
        #expect(first.stdout.contains("verify: consistent"))
        // 34 days with a 31-day cutoff: the first nights' compactions prune.
        #expect(first.stdout.contains("horizon 2026-10-04T00:00:00Z"))
        #expect(!first.stdout.contains("compacted 34 nights: 0 events pruned"))
        let ledger = try Ledger(path: db)
        #expect(try ledger.statistics().horizon == ts("2026-10-04T00:00:00Z"))
        #expect(try ledger.verify().isConsistent)
        let second = try runCLI(["demo", "--db", db, "--days", "34"])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stdout == first.stdout)
        let foreign = dir.child("foreign")
        try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: false)
        _ = try dir.file("foreign/notes.txt", "mine")
        let refused = try runCLI(["demo", "--db", foreign])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("was not made by the demo"))
        #expect(FileManager.default.fileExists(atPath: foreign + "/notes.txt"))
    }
}

/// Runs any executable to completion.
func runProcess(_ executable: String, _ arguments: [String]) throws -> ProcessResult {
    try runCLI(arguments, executable: executable)
}
