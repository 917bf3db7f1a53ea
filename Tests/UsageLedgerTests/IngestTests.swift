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
}
