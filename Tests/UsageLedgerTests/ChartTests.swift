import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import UsageLedger

/// Collects the bars of a chart.
private final class BarCollector: NSObject, XMLParserDelegate {
    var bars: [(period: String, series: String, value: String)] = []
    var root: String?
    func parser(
        _ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String]
    ) {
        if root == nil { root = name }
        if name == "rect", attributes["class"] == "bar" {
            bars.append(
                (attributes["data-period"] ?? "", attributes["data-series"] ?? "", attributes["data-value"] ?? ""))
        }
    }
}

@Suite("Charts")
struct ChartTests {
    @Test(
        "usage --chart writes a well-formed SVG whose bars carry the report's exact amounts, by resource or meter"
    )
    func chartMatchesReport() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        _ = try ledger.append(contentsOf: [
            event(.started, "a1", "app/a", at: "2026-11-20T10:00:00Z", footprint: ["instances": 2, "memory_mb": 512]),
            event(.started, "b1", "app/b", at: "2026-11-20T10:30:00Z", footprint: ["instances": 1, "memory_mb": 256]),
            event(.stopped, "b2", "app/b", at: "2026-11-20T12:15:00Z"),
            event(
                .started, "o1", "app/other-owner", owner: "org-2", at: "2026-11-20T10:00:00Z",
                footprint: ["instances": 9]),
        ])
        _ = try ledger.rollUp(now: testNow)
        let db = dir.child("ledger"), svg = dir.child("usage.svg")
        let common = [
            "usage", "--db", db, "--owner", "org-1", "--from", "2026-11-20T09:00:00Z", "--to", "2026-11-20T14:00:00Z",
            "--granularity", "hour", "--now", "2026-11-24T12:00:00Z", "--format", "json",
        ]
        let run = try runCLI(common + ["--group-by", "resource", "--chart", svg, "--chart-meter", "memory_mb"])
        #expect(run.status == 0, "\(run.stderr)")
        let parser = try #require(XMLParser(contentsOf: URL(fileURLWithPath: svg)))
        let collector = BarCollector()
        parser.delegate = collector
        #expect(parser.parse(), "the SVG is not well-formed: \(String(describing: parser.parserError))")
        #expect(collector.root == "svg")
        // memory_mb × seconds per resource and hour, exactly as the report gives them; org-2 is not drawn.
        let bars = collector.bars.map { "\($0.period) \($0.series) \($0.value)" }
        #expect(
            bars == [
                "2026-11-20T10:00:00Z app/a 1843200", "2026-11-20T10:00:00Z app/b 460800",
                "2026-11-20T11:00:00Z app/a 1843200", "2026-11-20T11:00:00Z app/b 921600",
                "2026-11-20T12:00:00Z app/a 1843200", "2026-11-20T12:00:00Z app/b 230400",
                "2026-11-20T13:00:00Z app/a 1843200",
            ])
        let byMeter = try runCLI(common + ["--chart", svg])
        #expect(byMeter.status == 0, "\(byMeter.stderr)")
        let text = try String(contentsOfFile: svg, encoding: .utf8)
        #expect(
            text.contains(#"data-period="2026-11-20T12:00:00Z" data-series="running" data-value="4500""#),
            "\(text.prefix(2000))")
        #expect(text.contains(#"data-series="memory_mb" data-value="2073600""#))
        let unwritable = try runCLI(common + ["--chart", dir.child("missing/usage.svg")])
        #expect(unwritable.status == 2)
        #expect(unwritable.stderr.contains("cannot write the chart to"), "\(unwritable.stderr)")
    }
}
