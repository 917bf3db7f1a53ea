import Foundation
import Testing
@testable import UsageLedger

/// The command-line tool states no default or rule of its own: it shows the library's constants, parses
/// enumerated options with ArgumentParser and reads inventories with the library's NDJSON line reader.
@Suite("Thin CLI over the library's defaults and readers")
struct ThinCLITests {
    @Test("the named defaults are the ones the library's types start with")
    func defaultsMatch() {
        let compaction = CompactionOptions()
        #expect(compaction.cutoffAgeDays == CompactionOptions.defaultCutoffAgeDays)
        #expect(compaction.snapshotRetentionDays == CompactionOptions.defaultSnapshotRetentionDays)
        #expect(compaction.batchSize == CompactionOptions.defaultBatchSize)
        let ingest = NDJSONIngest()
        #expect(ingest.batchSize == NDJSONIngest.defaultBatchSize)
        #expect(ingest.maximumLineBytes == NDJSONIngest.defaultMaximumLineBytes)
        #expect(NDJSONIngest.batchSizes.contains(NDJSONIngest.defaultBatchSize))
        #expect(Ledger.defaultPageSize <= Ledger.maximumPageSize)
        #expect(Ledger.defaultRollupGraceMicroseconds <= Ledger.maximumRollupGraceMicroseconds)
    }

    @Test("an inventory is read with a byte-order mark, CRLF and blank lines; a bad line is named")
    func inventoryLines() throws {
        let dir = try TemporaryDirectory()
        let good = #"{"resource":{"type":"app","id":"a","owner":"o"},"footprint":{"instances":1}}"#
        let other = good.replacing("\"a\"", with: "\"b\"")
        let file = try dir.file("running.ndjson", "\u{FEFF}" + good + "\r\n \t\r\n\n" + other + "\n")
        let fd = open(file, O_RDONLY)
        defer { close(fd) }
        let resources = try RunningResource.readInventory(fd: fd)
        #expect(resources.map(\.resource.description) == ["app/a", "app/b"])

        let bad = try dir.file("bad.ndjson", good + "\n\n" + #"{"resource":1}"# + "\n")
        let badFD = open(bad, O_RDONLY)
        defer { close(badFD) }
        let expected = NDJSONLineError(line: 3, error: .invalidField(field: "resource", reason: "must be an object"))
        #expect(throws: expected) {
            try RunningResource.readInventory(fd: badFD)
        }
    }

    @Test("a bad inventory line is a usage error naming the file and line")
    func inventoryErrorNamesLine() throws {
        let dir = try TemporaryDirectory()
        let file = try dir.file("running.ndjson", "\n" + #"{"resource":1}"# + "\n")
        let result = try runCLI(["seed-baseline", "--db", dir.child("l"), "--running", file])
        #expect(result.status == 2)
        let named = result.stderr.contains("\(file) line 2: invalid_field: resource: must be an object")
        #expect(named, "\(result.stderr)")
    }

    @Test("a bad enumerated value gets ArgumentParser's error listing the choices, exit status 2")
    func enumeratedOptions() throws {
        let dir = try TemporaryDirectory()
        let format = try runCLI(["init", "--db", dir.child("l"), "--format", "yaml"])
        #expect(format.status == 2)
        #expect(format.stderr.contains("'yaml' is invalid for '--format"), "\(format.stderr)")
        #expect(format.stderr.contains("'json'") && format.stderr.contains("'table'"))
        let durability = try runCLI(["init", "--db", dir.child("l"), "--durability", "sometimes"])
        #expect(durability.status == 2)
        #expect(durability.stderr.contains("'full', 'noMetaSync' or 'noSync'"), "\(durability.stderr)")
        let granularity = try runCLI([
            "usage", "--db", dir.child("l"), "--owner", "o", "--from", "2026-11-01T00:00:00Z",
            "--to", "2026-11-02T00:00:00Z", "--granularity", "week",
        ])
        #expect(granularity.status == 2)
        #expect(granularity.stderr.contains("'total', 'hour', 'day' or 'month'"), "\(granularity.stderr)")
    }
}
