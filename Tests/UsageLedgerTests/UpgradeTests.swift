import Foundation
import LMDBStorage
import Testing
@testable import UsageLedger

/// The fixtures (`Tests/Fixtures/format4`, `format5`): a ledger written by the build of that format from the
/// same events, and the answers that build gave (`Tests/Fixtures/make-fixture.py` says how both were made).
private func fixture(_ version: UInt32) -> String { repositoryRoot + "/Tests/Fixtures/format\(version)" }
private let fixtureNow = "2026-01-04T10:30:00Z"

/// The CLI arguments that produced one expected answer, from its file name (see `Tests/Fixtures/make-fixture.py`).
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
private func copyFixture(_ version: UInt32, into dir: TemporaryDirectory) throws -> String {
    let db = dir.child("ledger")
    try FileManager.default.createDirectory(atPath: db, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: fixture(version) + "/ledger/data.mdb", toPath: db + "/data.mdb")
    return db
}

/// The format stamped in a ledger, how many `hourly` rows it holds, and a digest of its `hourly` and
/// `events` tables (what upgrades rewrite), read without upgrading.
private func formatAndRows(_ db: String) throws -> (UInt32?, Int, UInt64) {
    var options = EnvironmentOptions()
    options.readOnly = true
    let environment = try Environment(path: db, options: options)
    let tables = try environment.openTables(["meta", "hourly", "events"])
    let meta = try Table<UTF8Text, RawBytes>("meta", in: tables)
    let hourly = try Table<RawBytes, RawBytes>("hourly", in: tables)
    let events = try Table<RawBytes, RawBytes>("events", in: tables)
    return try environment.read { (txn) throws(StorageError) in
        let version = try txn.rawGet(meta, "format_version").map { (bytes) throws(StorageError) in
            try BigEndianUInt32.decode(bytes)
        }
        var rows = 0
        var digest: UInt64 = 0xcbf2_9ce4_8422_2325
        for table in [hourly, events] {
            let cursor = try txn.cursor(table)
            var entry = try cursor.first()
            while let current = entry {
                if table.id == hourly.id { rows += 1 }
                for byte in current.key + [0xFF] + current.value {
                    digest = (digest ^ UInt64(byte)) &* 0x100_0000_01b3
                }
                entry = try cursor.next()
            }
        }
        return (version, rows, digest)
    }
}

@Suite("Upgrade from formats 4 and 5, on ledgers the builds of those formats wrote")
struct UpgradeTests {
    @Test(
        "every answer of the older build is the same after the upgrade to the current format, and verify agrees",
        arguments: [UInt32(4), 5])
    func answersSurviveUpgrade(from version: UInt32) throws {
        let dir = try TemporaryDirectory()
        let db = try copyFixture(version, into: dir)
        let before = try formatAndRows(db)
        #expect(before.0 == version)
        let fixtureDirectory = fixture(version)
        let expected = try FileManager.default.contentsOfDirectory(atPath: fixtureDirectory + "/expected").sorted()
        #expect(expected.count > 50)
        // The first command opens for writing, which upgrades; the rest read the upgraded ledger.
        let rollup = try runCLI(["rollup", "--db", db, "--now", "2026-01-04T08:10:00Z", "--format", "json"])
        #expect(rollup.status == 0, "\(rollup.stderr)")
        for name in expected {
            guard let command = arguments(forExpected: name, db: db) else { continue }
            let answer = try runCLI(command)
            let want = try String(contentsOfFile: fixtureDirectory + "/expected/" + name, encoding: .utf8)
            #expect(answer.stdout == want, "\(name): \(answer.stderr)")
        }
        let ledger = try Ledger(path: db)
        let stats = try ledger.statistics()
        #expect(stats.formatVersion == Ledger.formatVersion)
        // Steady hours became spans: fewer rows than the format-4 build kept; format 5 kept spans already.
        #expect((stats.databases["steady"]?.entries ?? 0) > 0)
        let rows = stats.databases["hourly"]?.entries ?? 0
        #expect(version == 4 ? rows < before.1 : rows == before.1)
        // Format 6 names every resource once and interns the meter names: instances, memory_mb, network_bytes.
        #expect(stats.databases["resource_names"]?.entries == stats.resources)
        #expect(stats.databases["meter_names"]?.entries == 3)
        let report = try ledger.verify()
        #expect(report.isConsistent, "\(report.differences)")
        #expect(report.eventsReplayed == 66)
    }

    @Test(
        "killed at any moment of the upgrade, the ledger is the old format intact or the current one; a rerun finishes",
        arguments: [UInt32(4), 5])
    func killedUpgrade(from version: UInt32) throws {
        let dir = try TemporaryDirectory()
        let original = try formatAndRows(try copyFixture(version, into: dir))
        let fixtureDirectory = fixture(version)
        var outcomes: Set<UInt32> = []
        for attempt in 0..<24 {
            let work = try TemporaryDirectory()
            let db = try copyFixture(version, into: work)
            let (process, out, err) = try startCLI(["rollup", "--db", db, "--now", "2026-01-04T08:10:00Z"])
            usleep(UInt32(attempt) * 2_500)  // from before the open to after the commit
            kill(process.processIdentifier, SIGKILL)
            _ = finish(process, out, err)
            let (found, count, digest) = try formatAndRows(db)
            outcomes.insert(found ?? 0)
            if found == version {
                #expect(count == original.1 && digest == original.2, "attempt \(attempt): the old format was changed")
            } else {
                #expect(found == Ledger.formatVersion, "attempt \(attempt): format \(found.map(String.init) ?? "none")")
            }
            let rerun = try runCLI(["rollup", "--db", db, "--now", "2026-01-04T08:10:00Z"])
            #expect(rerun.status == 0, "\(rerun.stderr)")
            let answer = try runCLI(
                arguments(forExpected: "usage-org-b-hour-grouped.json", db: db) ?? [])
            let want = try String(
                contentsOfFile: fixtureDirectory + "/expected/usage-org-b-hour-grouped.json", encoding: .utf8)
            #expect(answer.stdout == want, "attempt \(attempt)")
        }
        #expect(outcomes.contains(version), "no kill landed before the upgrade committed")
    }

    @Test(
        "an older ledger opened read-only is refused with the way out, and left as it was", arguments: [UInt32(4), 5])
    func readOnlyRefused(from version: UInt32) throws {
        let dir = try TemporaryDirectory()
        let db = try copyFixture(version, into: dir)
        let before = try Data(contentsOf: URL(fileURLWithPath: db + "/data.mdb"))
        let refused = try runCLI(["current", "--db", db])
        #expect(refused.status == 2)
        #expect(
            refused.stderr.contains("on-disk format \(version) must be upgraded; open it once for writing"),
            "\(refused.stderr)")
        // Not a byte changed: a read-only open creates none of the tables the older format lacks.
        #expect(try Data(contentsOf: URL(fileURLWithPath: db + "/data.mdb")) == before)
    }
}
