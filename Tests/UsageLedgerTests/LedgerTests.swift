import Foundation
import Testing
@testable import LMDBStorage
@testable import UsageLedger

@Suite("The event log")
struct LedgerTests {
    @Test("events of every kind round-trip through the library with seq and recorded_at")
    func roundTrip() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        let events = try EventCodecTests.examples.map { try EventJSON.decode($0) }
        let result = try ledger.append(contentsOf: events)
        #expect(result.outcomes == [.appended(seq: 1), .appended(seq: 2), .appended(seq: 3), .appended(seq: 4)])
        let page = try ledger.events(after: 0, limit: 10)
        #expect(page.events.map(\.event) == events)
        #expect(page.events.map(\.seq) == [1, 2, 3, 4])
        #expect(page.events.allSatisfy { $0.recordedAt == testNow })
        #expect(page.nextCursor == 4)
    }

    @Test("the feed pages by cursor and limit without gaps or repeats")
    func feedPaging() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: (1...25).map { started("e\($0)", "app/a\($0)") })
        var cursor: UInt64 = 0
        var seen: [UInt64] = []
        while true {
            let page = try ledger.events(after: cursor, limit: 7)
            if page.events.isEmpty { break }
            seen += page.events.map(\.seq)
            cursor = page.nextCursor
        }
        #expect(seen == Array(1...25))
        #expect(throws: LedgerError.invalidArgument(reason: "limit must be 1 to 100000 (got 0)")) {
            try ledger.events(after: 0, limit: 0)
        }
    }

    @Test("a retry of the same id and payload is a duplicate that returns the original seq")
    func duplicates() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        #expect(try ledger.append(started("e1")) == AppendReceipt(seq: 1, isDuplicate: false))
        #expect(try ledger.append(started("e1")) == AppendReceipt(seq: 1, isDuplicate: true))
        // The same instant written with an offset is the same payload.
        #expect(
            try ledger.append(started("e1", at: "2026-11-01T11:00:00+01:00"))
                == AppendReceipt(seq: 1, isDuplicate: true))
        // Inside one batch too.
        let batch = try ledger.append(contentsOf: [started("e2", "app/b"), started("e2", "app/b")])
        #expect(batch.outcomes == [.appended(seq: 2), .duplicate(seq: 2)])
        #expect(try ledger.events(after: 0, limit: 10).events.count == 2)
    }

    @Test("the same id with another payload is id_conflict")
    func conflict() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        try ledger.append(started("e1"))
        let changed = started("e1", footprint: ["instances": 2])
        #expect(throws: LedgerError.idConflict(id: "e1", existingSeq: 1)) { try ledger.append(changed) }
        let error = LedgerError.idConflict(id: "e1", existingSeq: 1)
        #expect(error.message == "id: 'e1' was already recorded as seq 1 with a different payload")
    }

    @Test("a resource's owner is fixed by its first event")
    func ownerMismatch() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        try ledger.append(started("e1", owner: "org-1"))
        let error = LedgerError.ownerMismatch(
            resource: ResourceID(type: "app", id: "a1"), owner: "org-1", submitted: "org-2")
        #expect(throws: error) { try ledger.append(stopped("e2", owner: "org-2")) }
        #expect(error.message == "resource.owner: app/a1 belongs to 'org-1', not 'org-2'")
        #expect(try ledger.owner(of: ResourceID(type: "app", id: "a1")) == "org-1")
    }

    @Test("an event more than 5 minutes after the ledger's clock is in_future")
    func inFuture() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        // testNow is 2026-11-24T12:00:00Z.
        try ledger.append(started("ok", at: "2026-11-24T12:05:00Z"))
        let expected = LedgerError.inFuture(
            occurredAt: ts("2026-11-24T12:05:00.000001Z"), now: testNow, toleranceMicroseconds: 300_000_000)
        #expect(throws: expected) { try ledger.append(started("late", "app/b", at: "2026-11-24T12:05:00.000001Z")) }
        #expect(
            expected.message
                == "occurred_at: 2026-11-24T12:05:00.000001Z is more than 300 s after the ledger's clock "
                + "(2026-11-24T12:00:00Z)"
        )
    }

    @Test("a batch with bad events commits the good ones and reports each bad one by index")
    func partialBatch() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        var invalid = started("bad")
        invalid.footprint = nil
        let result = try ledger.append(contentsOf: [
            started("g1"), invalid, started("g2", "app/b"), started("g1", footprint: [:]),
        ])
        #expect(result.appendedCount == 2)
        #expect(result.rejections.map(\.index) == [1, 3])
        #expect(result.rejections.map(\.error.code) == ["invalid_field", "id_conflict"])
        #expect(result.firstSeq == 1 && result.lastSeq == 2)
        #expect(try ledger.events(after: 0, limit: 10).events.map(\.event.id) == ["g1", "g2"])
    }

    @Test("history lists a resource's events by occurred_at, then seq, whatever the arrival order")
    func historyOrder() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        try ledger.append(stopped("s", at: "2026-11-01T12:00:00Z"))
        try ledger.append(started("a", at: "2026-11-01T10:00:00Z"))
        try ledger.append(started("b", at: "2026-11-01T11:00:00Z", footprint: ["instances": 2]))
        try ledger.append(started("c", at: "2026-11-01T11:00:00Z", footprint: ["instances": 3]))
        try ledger.append(started("other", "app/zzz"))
        let history = try ledger.history(of: ResourceID(type: "app", id: "a1"))
        #expect(history.map(\.event.id) == ["a", "b", "c", "s"])
        #expect(try ledger.history(of: ResourceID(type: "app", id: "never")).isEmpty)
    }

    @Test("events survive closing and reopening, and seq continues")
    func persistence() throws {
        let dir = try TemporaryDirectory()
        do {
            let ledger = try openLedger(dir) { $0.durability = .full }
            try ledger.append(started("e1"))
        }
        let reopened = try openLedger(dir)
        #expect(try reopened.append(started("e1")).isDuplicate)
        #expect(try reopened.append(stopped("e2")).seq == 2)
        let stats = try reopened.statistics()
        #expect(stats.eventsByKind[.started] == 1 && stats.eventsByKind[.stopped] == 1)
        #expect(stats.resources == 1)
        #expect(stats.nextSeq == 3)
        #expect(stats.databases["events"]?.entries == 2)
    }

    @Test("the map grows from a tiny initial size without an error")
    func mapGrowth() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir) { $0.initialMapSize = 64 * 1024 }
        let initial = try ledger.statistics().environment.mapSize
        for batch in 0..<20 {
            let events = (0..<500).map { n in started("e-\(batch)-\(n)", "app/r\(batch)-\(n)") }
            #expect(try ledger.append(contentsOf: events).appendedCount == 500)
        }
        let stats = try ledger.statistics()
        #expect(stats.databases["events"]?.entries == 10_000)
        #expect(stats.environment.mapSize > initial)
    }

    @Test("a ledger at its maximum size refuses the batch as ledger_full and keeps what it had")
    func ledgerFull() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir) {
            $0.initialMapSize = 256 * 1024
            $0.maximumMapSize = 512 * 1024
        }
        var accepted = 0
        var failure: LedgerError?
        for batch in 0..<200 where failure == nil {
            do {
                accepted += try ledger.append(
                    contentsOf: (0..<100).map { started("f-\(batch)-\($0)", "app/f\(batch)-\($0)") }
                ).appendedCount
            } catch {
                failure = error
            }
        }
        #expect(failure == .ledgerFull(maximumBytes: 512 * 1024))
        #expect(accepted > 0)
        #expect(try ledger.events(after: 0, limit: 100_000).events.count == accepted)
    }

    @Test("a ledger of a newer on-disk format is refused with a clear message")
    func newerFormat() throws {
        let dir = try TemporaryDirectory()
        _ = try openLedger(dir)
        // Stamp a future format through the storage layer, as a newer build would have written it.
        let environment = try EnvironmentRegistry.shared.environment(
            path: dir.child("ledger"), options: LedgerOptions())
        let meta = try Table<UTF8Text, RawBytes>("meta", in: environment.openTables(["meta"]))
        try environment.write { txn in
            var writer = ByteWriter()
            writer.writeBigEndian(UInt32(99))
            try txn.put(meta, "format_version", writer.bytes)
        }
        #expect(throws: LedgerError.formatTooNew(found: 99, supported: Ledger.formatVersion)) { try openLedger(dir) }
        #expect(
            LedgerError.formatTooNew(found: 99, supported: 2).message
                == "the ledger has on-disk format 99, newer than format 2 that this build reads; upgrade usage-ledger")
    }

    @Test("a record with a flipped byte is reported as corrupt, not returned")
    func corruptRecord() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        try ledger.append(started("e1"))
        let events = ledger.schema.events
        try ledger.environment.write { txn in
            guard var bytes = try txn.get(events, 1) else { return }
            bytes[12] ^= 0x40
            try txn.put(events, 1, bytes)
        }
        #expect(throws: LedgerError.corrupt(reason: "event seq 1: checksum mismatch")) {
            try ledger.events(after: 0, limit: 1)
        }
    }

    @Test("opening a missing ledger read-only or a file path fails with cannot_open")
    func cannotOpen() throws {
        let dir = try TemporaryDirectory()
        var options = LedgerOptions()
        options.readOnly = true
        #expect { try Ledger(path: dir.child("missing"), options: options) } throws: {
            ($0 as? LedgerError)?.code == "cannot_open"
        }
        let file = try dir.file("plain", "not a ledger")
        #expect { try Ledger(path: file) } throws: { error in
            guard case .cannotOpen(_, let reason)? = error as? LedgerError else { return false }
            return reason.contains("a ledger is a directory")
        }
    }

    @Test("ledger files are created with mode 0600 in a 0700 directory")
    func fileModes() throws {
        let dir = try TemporaryDirectory()
        _ = try openLedger(dir)
        for name in ["data.mdb", "lock.mdb"] {
            let attributes = try FileManager.default.attributesOfItem(atPath: dir.child("ledger/" + name))
            #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(name)")
        }
        let directory = try FileManager.default.attributesOfItem(atPath: dir.child("ledger"))
        #expect((directory[.posixPermissions] as? Int) == 0o700)
    }

    @Test("many threads appending at once lose nothing and duplicate nothing")
    func concurrentThreads() async throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir) { $0.initialMapSize = 128 * 1024 }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    for batch in 0..<10 {
                        // Workers overlap: ids repeat across workers, so half of all submissions are retries.
                        let events = (0..<50).map { n in
                            started("t-\(worker % 2)-\(batch)-\(n)", "app/t\(worker % 2)-\(batch)-\(n)")
                        }
                        _ = try ledger.append(contentsOf: events)
                        _ = try ledger.events(after: 0, limit: 10)
                    }
                }
            }
            try await group.waitForAll()
        }
        let all = try ledger.events(after: 0, limit: 100_000).events
        #expect(all.count == 1000)
        #expect(all.map(\.seq) == Array(1...1000))
        #expect(Set(all.map(\.event.id)).count == 1000)
    }
}
