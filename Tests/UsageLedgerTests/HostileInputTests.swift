import Foundation
import Testing
@testable import UsageLedger

/// One class of hostile input from `Tests/Corpus/hostile`: what each bad line must be rejected as, and how
/// many events of the file (each file ends with a good line) must still be recorded.
struct HostileCase: CustomTestStringConvertible, Sendable {
    let file: String
    let rejections: [(line: Int, code: String, message: String)]
    let appended: Int
    var testDescription: String { file }
}

@Suite("Hostile input: every class rejected with its code and message, the rest ingested, nothing crashes")
struct HostileInputTests {
    static let cases: [HostileCase] = [
        HostileCase(file: "invalid-utf8", rejections: [(1, "invalid_json", "invalid UTF-8 at byte 11")], appended: 1),
        HostileCase(file: "bom-first-line", rejections: [], appended: 2),
        HostileCase(file: "crlf", rejections: [], appended: 2),
        HostileCase(file: "empty-lines", rejections: [], appended: 1),
        HostileCase(
            file: "nul-bytes",
            rejections: [
                (1, "invalid_json", "unescaped control character in a string"),
                (2, "invalid_json", "unexpected character"),
            ], appended: 1),
        HostileCase(
            file: "deep-nesting", rejections: [(1, "invalid_json", "nesting deeper than 64 levels")], appended: 1),
        HostileCase(file: "duplicate-keys", rejections: [(1, "invalid_json", "duplicate key 'kind'")], appended: 1),
        HostileCase(
            file: "beyond-64-bits",
            rejections: [
                (1, "overflow", "footprint.memory_mb: 18446744073709551616 does not fit a signed 64-bit integer")
            ], appended: 1),
        HostileCase(
            file: "float-for-integer", rejections: [(1, "invalid_field", "deltas.bytes: must be an integer, got 1e3")],
            appended: 1),
        HostileCase(
            file: "string-for-integer",
            rejections: [(1, "invalid_field", "footprint.memory_mb: must be an integer, got a string")], appended: 1),
        HostileCase(
            file: "negative-footprint",
            rejections: [(1, "invalid_field", "footprint.memory_mb: must not be negative (got -1)")], appended: 1),
        HostileCase(file: "unknown-field", rejections: [(1, "invalid_field", "region: unknown field")], appended: 1),
        HostileCase(file: "year-0", rejections: [], appended: 2),
        HostileCase(
            file: "year-9999",
            rejections: [(1, "in_future", "occurred_at: 9999-12-31T23:59:59.999999Z is more than 300 s after")],
            appended: 1),
        HostileCase(
            file: "leap-second", rejections: [(1, "invalid_field", "leap seconds (:60) are not accepted")],
            appended: 1),
        HostileCase(file: "odd-offsets", rejections: [(3, "invalid_field", "offset out of range")], appended: 3),
        HostileCase(
            file: "many-attributes",
            rejections: [(1, "invalid_field", "attributes: at most 32 attributes (got 10000)")], appended: 1),
        HostileCase(
            file: "meter-name-pattern",
            rejections: [(1, "invalid_field", "footprint: meter name 'Memory-MB' does not match")], appended: 1),
    ]

    func ingest(_ path: String) throws -> (IngestSummary, [IngestRejection], Ledger, TemporaryDirectory) {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var rejections: [IngestRejection] = []
        let summary = try NDJSONIngest().run(fd: fd, into: ledger, onRejection: { rejections.append($0) })
        return (summary, rejections, ledger, dir)
    }

    @Test("corpus class", arguments: cases)
    func corpus(_ hostile: HostileCase) throws {
        let (summary, rejections, ledger, _) = try ingest(
            repositoryRoot + "/Tests/Corpus/hostile/\(hostile.file).ndjson")
        #expect(rejections.map(\.line) == hostile.rejections.map(\.line))
        for (got, want) in zip(rejections, hostile.rejections) {
            #expect(got.error.code == want.code)
            #expect(got.error.message.contains(want.message), "\(got.error.message)")
        }
        #expect(summary.appended == hostile.appended)
        #expect(try ledger.events(after: 0, limit: 100).events.last?.event.id == "good-\(hostile.file)")
        #expect(try ledger.verify().isConsistent)
    }

    @Test("a line of 10 MB is rejected without stopping the file")
    func tenMegabyteLine() throws {
        let dir = try TemporaryDirectory()
        let huge =
            #"{"id":"huge","kind":"stopped","resource":{"type":"app","id":""# + String(repeating: "x", count: 10 << 20)
            + #"","owner":"o"}}"#
        let good =
            #"{"id":"after","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
            + #""occurred_at":"2026-11-01T10:00:00Z"}"#
        let path = try dir.file("huge.ndjson", huge + "\n" + good + "\n")
        let (summary, rejections, _, _) = try ingest(path)
        #expect(rejections.map(\.line) == [1])
        #expect(rejections.first?.error == .invalidJSON(reason: "line is longer than 1048576 bytes"))
        #expect(summary.appended == 1)
    }
}

@Suite("Fuzz targets")
struct FuzzCorpusTests {
    @Test(
        "each fuzz target replays its seed corpus without a crash or a round-trip mismatch",
        arguments: ["event-json", "stored-record"])
    func replaySeeds(target: String) throws {
        let corpus = repositoryRoot + "/Tests/Fuzz/Corpus/" + target
        let seeds = try FileManager.default.contentsOfDirectory(atPath: corpus).sorted().map { corpus + "/" + $0 }
        #expect(seeds.count > 10)
        let executable = URL(fileURLWithPath: cliPath).deletingLastPathComponent().appendingPathComponent(
            "fuzz-" + target
        ).path
        let result = try runProcess(executable, seeds)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "replayed \(seeds.count) inputs\n")
    }
}
