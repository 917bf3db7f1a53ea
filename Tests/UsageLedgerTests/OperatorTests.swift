import Foundation
import Testing
@testable import UsageLedger

/// What operators meet first: backups, space, and the event counts of `stats`.
@Suite("Operators")
struct OperatorTests {
    /// The permission bits of `path`.
    static func mode(_ path: String) -> mode_t {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o777 : 0o7777
    }

    /// A small ledger with a few hundred events, made through the library.
    static func ledgerWithEvents(in dir: TemporaryDirectory, count: Int = 300) throws -> Ledger {
        let ledger = try openLedger(dir)
        let events = (0..<count).map { started("e\($0)", "app/a\($0)", at: "2026-11-01T10:00:00Z") }
        _ = try ledger.append(contentsOf: events)
        return ledger
    }

    @Test("a backup is a 0600 file in a 0700 directory, also in an existing empty directory, and it is whole")
    func backupModes() throws {
        let dir = try TemporaryDirectory()
        let ledger = try Self.ledgerWithEvents(in: dir)
        let fresh = dir.child("fresh")
        try ledger.backup(to: fresh, compacting: false)
        #expect(Self.mode(fresh) == 0o700)
        #expect(Self.mode(fresh + "/data.mdb") == 0o600)
        let existing = dir.child("existing")
        #expect(mkdir(existing, 0o755) == 0)
        try ledger.backup(to: existing, compacting: true)
        #expect(Self.mode(existing) == 0o700)
        #expect(Self.mode(existing + "/data.mdb") == 0o600)
        for copy in [fresh, existing] {
            let opened = try Ledger(
                path: copy,
                options: {
                    var o = LedgerOptions(); o.readOnly = true; return o
                }())
            #expect(try opened.events(after: 0, limit: 1000).events.count == 300)
        }
    }

    @Test("a backup onto a non-empty directory, a file or an old copy is refused as target_exists, untouched")
    func backupRefusesExistingTargets() throws {
        let dir = try TemporaryDirectory()
        try Self.ledgerWithEvents(in: dir).close()
        let db = dir.child("ledger")
        let busy = dir.child("busy")
        #expect(mkdir(busy, 0o755) == 0)
        _ = try dir.file("busy/notes.txt", "keep me\n")
        let file = try dir.file("plain-file", "not a directory\n")
        let oldCopy = dir.child("old-copy")
        #expect(try runCLI(["backup", "--db", db, "--to", oldCopy]).status == 0)
        let oldBytes = try Data(contentsOf: URL(fileURLWithPath: oldCopy + "/data.mdb"))
        for (target, reason) in [(busy, "is not empty (it holds 'notes.txt')"), (file, "is not a directory")] {
            let result = try runCLI(["backup", "--db", db, "--to", target])
            #expect(result.status == 2)
            #expect(
                result.stderr.contains("target_exists: the backup target '\(target)' \(reason)"), "\(result.stderr)")
        }
        let again = try runCLI(["backup", "--db", db, "--to", oldCopy, "--compact"])
        #expect(again.status == 2)
        #expect(again.stderr.contains("target_exists") && again.stderr.contains("'data.mdb'"), "\(again.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: busy) == ["notes.txt"])
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "not a directory\n")
        #expect(try Data(contentsOf: URL(fileURLWithPath: oldCopy + "/data.mdb")) == oldBytes)
        #expect(Self.mode(busy) == 0o755)
    }

    @Test("a data.mdb that is not LMDB is corrupt, naming the file; a missing ledger is cannot_open")
    func corruptIsNotCannotOpen() throws {
        let dir = try TemporaryDirectory()
        let garbage = dir.child("garbage")
        #expect(mkdir(garbage, 0o700) == 0)
        try Data((0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
            .write(to: URL(fileURLWithPath: garbage + "/data.mdb"))
        let damaged = try runCLI(["stats", "--db", garbage])
        #expect(damaged.status == 2)
        #expect(
            damaged.stderr.contains("corrupt: the ledger is corrupt: '\(garbage)/data.mdb' is not an LMDB data file"),
            "\(damaged.stderr)")
        let missing = try runCLI(["stats", "--db", dir.child("nothing")])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("cannot_open"), "\(missing.stderr)")
    }

    @Test("stats reports free pages, and a compacted copy writes exactly the bytes it says")
    func freePagesAndCompactedCopy() throws {
        let dir = try TemporaryDirectory()
        let ledger = try Self.ledgerWithEvents(in: dir, count: 3_000)
        let before = try ledger.statistics().space
        #expect(before.fileBytes >= before.compactedCopyBytes)
        _ = try ledger.purgeAndReseed(running: [])
        let after = try ledger.statistics()
        // Purged: almost every page is free, the used high-water mark stays where it was.
        #expect(after.space.freeBytes > before.compactedCopyBytes / 2)
        #expect(after.space.usedBytes >= before.usedBytes)
        #expect(after.space.reclaimableBytes > after.space.fileBytes / 2)
        let copy = dir.child("copy")
        try ledger.backup(to: copy, compacting: true)
        let written = try FileManager.default.attributesOfItem(atPath: copy + "/data.mdb")[.size] as? Int
        #expect(written == after.space.compactedCopyBytes)
        #expect(after.space.reclaimableBytes == after.space.fileBytes - after.space.compactedCopyBytes)
        let json = try runCLI(["stats", "--db", dir.child("ledger"), "--format", "json"])
        #expect(json.stdout.contains(#""free_bytes":\#(after.space.freeBytes)"#), "\(json.stdout)")
        #expect(json.stdout.contains(#""compacted_copy_bytes":\#(after.space.compactedCopyBytes)"#))
    }

    @Test("stats names lifetime appends and stored events as two figures")
    func appendedAndStored() throws {
        let dir = try TemporaryDirectory()
        let ledger = try Self.ledgerWithEvents(in: dir, count: 10)
        _ = try ledger.purgeAndReseed(running: [
            RunningResource(resource: ResourceID(type: "app", id: "a0"), owner: "org-1", footprint: ["instances": 1])
        ])
        let stats = try ledger.statistics()
        #expect(stats.appendedEvents == 11)
        #expect(stats.storedEvents == 1)
        #expect(stats.prunedEvents == 10)
        let table = try runCLI(["stats", "--db", dir.child("ledger"), "--format", "table"])
        #expect(table.stdout.contains("11 events appended over its life, 1 stored"), "\(table.stdout)")
    }

    @Test("seed-baseline --correct-footprints appends one restatement per differing footprint, once")
    func correctFootprintsCLI() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        let now = ["--now", "2026-11-24T12:00:00Z"]
        let start =
            #"{"id":"s1","kind":"started","resource":{"type":"app","id":"a","owner":"org-1"},"#
            + #""occurred_at":"2026-11-24T10:00:00Z","footprint":{"instances":2}}"# + "\n"
        #expect(try runCLI(["append", "-", "--db", db] + now, stdin: start).status == 0)
        let running = try dir.file(
            "running.ndjson",
            #"{"resource":{"type":"app","id":"a","owner":"org-1"},"footprint":{"instances":3}}"# + "\n")
        let arguments = ["seed-baseline", "--db", db, "--running", running, "--correct-footprints", "--format", "json"]
        let first = try runCLI(arguments + now)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains(#""already_running":1,"footprints_corrected":1,"#), "\(first.stdout)")
        let rerun = try runCLI(arguments + ["--now", "2026-11-24T13:00:00Z"])
        #expect(rerun.stdout.contains(#""already_running":1,"footprints_corrected":0,"#), "\(rerun.stdout)")
        let status = try runCLI(["current", "--db", db, "--format", "json"])
        #expect(status.stdout.contains(#""instances":3"#), "\(status.stdout)")
    }
}
