import Foundation
import LMDBStorage
import Testing
@testable import UsageLedger

/// The format-4 fixture (`Tests/Fixtures/format4`): a ledger written by the format-4 build, and the answers
/// that build gave (its `make-fixture.py` says how both were made).
private let fixture = repositoryRoot + "/Tests/Fixtures/format4"
private let fixtureNow = "2026-01-04T10:30:00Z"

/// The CLI arguments that produced one expected answer, from its file name (see `make-fixture.py`).
private func arguments(forExpected name: String, db: String) -> [String]? {
    let parts = name.replacingOccurrences(of: ".json", with: "").split(separator: "-").map(String.init)
    let range = ["--from", "2026-01-01T00:00:00Z", "--to", fixtureNow, "--now", fixtureNow]
    switch parts.first {
    case "current" where parts.count == 1: return ["current", "--db", db, "--format", "json"]
    case "current": return ["current", "--db", db, "--format", "json", "--owner", parts[1...].joined(separator: "-")]
    case "events": return ["events", "--db", db, "--format", "json", "--after", "0", "--limit", "100000"]
    case "usage" where parts[1] == "org":
        let grouped = parts.last == "grouped"
        let granularity = grouped ? parts[parts.count - 2] : parts[parts.count - 1]
        return ["usage", "--db", db, "--format", "json", "--owner", "org-\(parts[2])", "--granularity", granularity]
            + range + (grouped ? ["--group-by", "resource"] : [])
    case "usage":
        let resource = parts[1] + "/" + parts[2..<(parts.count - 1)].joined(separator: "-")
        return [
            "usage", "--db", db, "--format", "json", "--resource", resource, "--granularity", parts.last ?? "total",
        ]
            + range
    default: return nil
    }
}

/// A fresh copy of the fixture ledger.
private func copyFixture(into dir: TemporaryDirectory) throws -> String {
    let db = dir.child("ledger")
    try FileManager.default.createDirectory(atPath: db, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: fixture + "/ledger/data.mdb", toPath: db + "/data.mdb")
    return db
}

/// The format stamped in a ledger and a digest of its format-4 `hourly` table, read without upgrading.
private func formatAndRows(_ db: String) throws -> (UInt32?, Int, UInt64) {
    var options = EnvironmentOptions()
    options.readOnly = true
    let environment = try Environment(path: db, options: options)
    let tables = try environment.openTables(["meta", "hourly"])
    let meta = try Table<UTF8Text, RawBytes>("meta", in: tables)
    let hourly = try Table<RawBytes, RawBytes>("hourly", in: tables)
    return try environment.read { (txn) throws(StorageError) in
        let version = try txn.rawGet(meta, "format_version").map { (bytes) throws(StorageError) in
            try BigEndianUInt32.decode(bytes)
        }
        var count = 0
        var digest: UInt64 = 0xcbf2_9ce4_8422_2325
        let cursor = try txn.cursor(hourly)
        var entry = try cursor.first()
        while let current = entry {
            count += 1
            for byte in current.key + [0xFF] + current.value { digest = (digest ^ UInt64(byte)) &* 0x100_0000_01b3 }
            entry = try cursor.next()
        }
        return (version, count, digest)
    }
}

@Suite("Upgrade from format 4, on a ledger the format-4 build wrote")
struct UpgradeTests {
    @Test("every answer of the format-4 build is the same after the upgrade to format 5, and verify agrees")
    func answersSurviveUpgrade() throws {
        let dir = try TemporaryDirectory()
        let db = try copyFixture(into: dir)
        let before = try formatAndRows(db)
        #expect(before.0 == 4)
        let expected = try FileManager.default.contentsOfDirectory(atPath: fixture + "/expected").sorted()
        #expect(expected.count > 50)
        // The first command opens for writing, which upgrades; the rest read the upgraded ledger.
        let rollup = try runCLI(["rollup", "--db", db, "--now", "2026-01-04T08:10:00Z", "--format", "json"])
        #expect(rollup.status == 0, "\(rollup.stderr)")
        for name in expected {
            guard let command = arguments(forExpected: name, db: db) else { continue }
            let answer = try runCLI(command)
            let want = try String(contentsOfFile: fixture + "/expected/" + name, encoding: .utf8)
            #expect(answer.stdout == want, "\(name): \(answer.stderr)")
        }
        let ledger = try Ledger(path: db)
        let stats = try ledger.statistics()
        #expect(stats.formatVersion == 5)
        // Steady hours became spans: fewer rows than the format-4 build kept.
        #expect((stats.databases["steady"]?.entries ?? 0) > 0)
        #expect((stats.databases["hourly"]?.entries ?? 0) < before.1)
        let report = try ledger.verify()
        #expect(report.isConsistent, "\(report.differences)")
        #expect(report.eventsReplayed == 66)
    }

    @Test("killed at any moment of the upgrade, the ledger is format 4 intact or format 5, and a rerun finishes")
    func killedUpgrade() throws {
        let dir = try TemporaryDirectory()
        let original = try formatAndRows(try copyFixture(into: dir))
        var outcomes: Set<UInt32> = []
        for attempt in 0..<24 {
            let work = try TemporaryDirectory()
            let db = try copyFixture(into: work)
            let (process, out, err) = try startCLI(["rollup", "--db", db, "--now", "2026-01-04T08:10:00Z"])
            usleep(UInt32(attempt) * 2_500)  // from before the open to after the commit
            kill(process.processIdentifier, SIGKILL)
            _ = finish(process, out, err)
            let (version, count, digest) = try formatAndRows(db)
            outcomes.insert(version ?? 0)
            if version == 4 {
                #expect(count == original.1 && digest == original.2, "attempt \(attempt): format 4 was changed")
            } else {
                #expect(version == 5, "attempt \(attempt): format \(version.map(String.init) ?? "none")")
            }
            let rerun = try runCLI(["rollup", "--db", db, "--now", "2026-01-04T08:10:00Z"])
            #expect(rerun.status == 0, "\(rerun.stderr)")
            let answer = try runCLI(
                arguments(forExpected: "usage-org-b-hour-grouped.json", db: db) ?? [])
            let want = try String(contentsOfFile: fixture + "/expected/usage-org-b-hour-grouped.json", encoding: .utf8)
            #expect(answer.stdout == want, "attempt \(attempt)")
        }
        #expect(outcomes.contains(4), "no kill landed before the upgrade committed")
    }

    @Test("a format-4 ledger opened read-only is refused with the way out, and left as it was")
    func readOnlyRefused() throws {
        let dir = try TemporaryDirectory()
        let db = try copyFixture(into: dir)
        let before = try formatAndRows(db)
        let refused = try runCLI(["current", "--db", db])
        #expect(refused.status == 2)
        #expect(
            refused.stderr.contains("on-disk format 4 must be upgraded; open it once for writing"), "\(refused.stderr)")
        let after = try formatAndRows(db)
        #expect(after.0 == before.0 && after.1 == before.1 && after.2 == before.2)
    }
}
