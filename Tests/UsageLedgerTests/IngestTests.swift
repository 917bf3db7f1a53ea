import Foundation
import Testing
@testable import UsageLedger

@Suite("Streaming NDJSON ingest")
struct IngestTests {
    @Test(
        "an over-long line is rejected without being held whole; BOM, CRLF and blank lines handled; the rest commits"
    )
    func longLinesAndLineEnds() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        let good = { (n: Int) in
            #"{"id":"i\#(n)","kind":"started","resource":{"type":"app","id":"a\#(n)","owner":"o"},"#
                + #""occurred_at":"2026-11-01T10:00:00Z","footprint":{}}"#
        }
        let huge =
            #"{"id":"huge","kind":"stopped","resource":{"type":"app","id":""# + String(repeating: "x", count: 3_000_000)
            + #"","owner":"o"}}"#
        let text = "\u{FEFF}" + good(1) + "\r\n\n" + huge + "\n" + good(2) + "\r\n   \n" + huge + "\n" + good(3)
        let file = try dir.file("in.ndjson", text)
        let fd = open(file, O_RDONLY)
        defer { close(fd) }
        var ingest = NDJSONIngest()
        ingest.maximumLineBytes = 64 * 1024
        ingest.batchSize = 2
        var rejections: [IngestRejection] = []
        let summary = try ingest.run(fd: fd, into: ledger, onRejection: { rejections.append($0) })
        #expect(summary.lines == 7)
        #expect(summary.appended == 3)
        #expect(summary.blank == 2)
        #expect(rejections.map(\.line) == [3, 6])
        #expect(rejections.allSatisfy { $0.error == .invalidJSON(reason: "line is longer than 65536 bytes") })
        #expect(try ledger.events(after: 0, limit: 10).events.map(\.event.id) == ["i1", "i2", "i3"])
    }

    @Test("rejections are reported in line order across batches, whether the JSON or a rule is wrong")
    func rejectionOrder() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        var lines: [String] = []
        for n in 1...12 {
            switch n % 3 {
            case 0: lines.append("{broken \(n)")
            case 1:
                lines.append(
                    #"{"id":"v\#(n)","kind":"started","resource":{"type":"app","id":"a\#(n)","owner":"o"},"#
                        + #""occurred_at":"2026-11-01T10:00:00Z"}"#
                )
            default:
                lines.append(
                    #"{"id":"ok\#(n)","kind":"stopped","resource":{"type":"app","id":"a\#(n)","owner":"o"},"#
                        + #""occurred_at":"2026-11-01T10:00:00Z"}"#
                )
            }
        }
        let file = try dir.file("mixed.ndjson", lines.joined(separator: "\n"))
        let fd = open(file, O_RDONLY)
        defer { close(fd) }
        var ingest = NDJSONIngest()
        ingest.batchSize = 2
        var rejections: [IngestRejection] = []
        let summary = try ingest.run(fd: fd, into: ledger, onRejection: { rejections.append($0) })
        #expect(rejections.map(\.line) == [1, 3, 4, 6, 7, 9, 10, 12])
        #expect(
            rejections.map(\.error.code) == [
                "invalid_field", "invalid_json", "invalid_field", "invalid_json", "invalid_field", "invalid_json",
                "invalid_field", "invalid_json",
            ])
        #expect(summary.appended == 4 && summary.rejected == 8)
    }

    @Test("decoding overlaps the append of the batch before: progress after each commit, every line once")
    func pipelinedBatches() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        let lines = (1...1_000).map { n in
            #"{"id":"p\#(n)","kind":"started","resource":{"type":"app","id":"a\#(n % 37)","owner":"o"},"#
                + #""occurred_at":"2026-11-01T10:00:00Z","footprint":{"instances":\#(n % 5)}}"#
        }
        let file = try dir.file("many.ndjson", lines.joined(separator: "\n") + "\n")
        let fd = open(file, O_RDONLY)
        defer { close(fd) }
        var ingest = NDJSONIngest()
        ingest.batchSize = 64
        var progress: [IngestSummary] = []
        let summary = try ingest.run(
            fd: fd, into: ledger, onRejection: { Issue.record("line \($0.line) rejected: \($0.error)") },
            onProgress: { progress.append($0) })
        #expect(summary.appended == 1_000 && summary.lines == 1_000)
        #expect(progress.count == 16)  // one per committed batch of 64 (the last holds 40)
        #expect(progress.map(\.appended) == (1...16).map { min($0 * 64, 1_000) })
        #expect(summary.firstSeq == 1 && summary.lastSeq == 1_000)
        let events = try ledger.events(after: 0, limit: 2_000).events
        #expect(events.map(\.event.id) == (1...1_000).map { "p\($0)" })
    }

    @Test("a failing append stops the import with its error once the batch in flight is known; nothing is lost")
    func pipelineFailure() throws {
        let dir = try TemporaryDirectory()
        _ = try openLedger(dir)
        let readOnly = try openLedger(dir) { $0.readOnly = true }
        let lines = (1...300).map { n in
            #"{"id":"f\#(n)","kind":"stopped","resource":{"type":"app","id":"a1","owner":"o"},"#
                + #""occurred_at":"2026-11-01T10:00:00Z"}"#
        }
        let file = try dir.file("f.ndjson", lines.joined(separator: "\n"))
        let fd = open(file, O_RDONLY)
        defer { close(fd) }
        var ingest = NDJSONIngest()
        ingest.batchSize = 50
        #expect {
            _ = try ingest.run(fd: fd, into: readOnly, onRejection: { _ in })
        } throws: {
            ($0 as? LedgerError)?.code == "read_only"
        }
        #expect(try readOnly.events(after: 0, limit: 10).events.isEmpty)
    }
}
