import UsageLedger
#if canImport(Glibc)
import Glibc
#endif

/// Draws a usage report as stacked bars in SVG: one bar per period, stacked by resource (one meter) or
/// by meter (one subject). Bar heights are scaled with integer arithmetic, and every bar carries its
/// exact amount in a `data-value` attribute and a tooltip, so the picture never rounds a figure it shows.
struct UsageChart {
    /// What the bars stack.
    enum Stack: String, CaseIterable { case resource, meter }

    let report: UsageReport
    let stack: Stack
    /// The meter drawn when stacking by resource: `running`, a footprint meter, or an adjustment meter.
    let meter: String
    let title: String

    static let width = 960, height = 480
    static let left = 90, right = 220, top = 40, bottom = 60
    static let palette = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
    ]
    /// Series beyond this many are drawn together as "other", in grey.
    static let maximumSeries = 9

    static func colour(_ index: Int, _ name: String) -> String {
        name == "other" ? "#9a9a9a" : palette[index % palette.count]
    }

    /// The amount of `name` in a row, in the units the chart shows (µs-units for time integrals, plain for
    /// adjustments).
    static func amount(_ amounts: UsageAmounts, _ name: String) -> Int128 {
        if name == "running" { return amounts.runningMicroseconds }
        return amounts.meterMicroseconds[name] ?? amounts.adjustments[name] ?? 0
    }

    /// Exact text for an amount of `name`.
    static func text(_ value: Int128, _ name: String, adjustment: Bool) -> String {
        adjustment ? String(value) : ExactDecimal.seconds(fromMicroseconds: value)
    }

    func svg() -> String {
        // Every period from the report's start to its end (at most 5,000 drawn).
        let periods = ((try? report.periods()) ?? []).prefix(5000).map { $0.start.microseconds }
        // Values per (period, series).
        var values: [Int64: [String: Int128]] = [:]
        var seriesTotals: [String: Int128] = [:]
        var isAdjustment = false
        for row in report.rows {
            var parts: [(String, Int128)] = []
            switch stack {
            case .resource:
                parts = [(row.resource?.description ?? "all", Self.amount(row.amounts, meter))]
                if row.amounts.adjustments[meter] != nil { isAdjustment = true }
            case .meter:
                parts =
                    [("running", row.amounts.runningMicroseconds)]
                    + row.amounts.meterMicroseconds.map { ($0.key, $0.value) }
            }
            for (series, value) in parts where value > 0 {
                values[row.periodStart.microseconds, default: [:]][series, default: 0] += value
                seriesTotals[series, default: 0] += value
            }
        }
        // The largest series keep their own colour; the rest are "other".
        let ranked = seriesTotals.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key)
        let shown = Array(ranked.prefix(Self.maximumSeries))
        let hasOther = ranked.count > shown.count
        let series = shown + (hasOther ? ["other"] : [])
        func seriesOf(_ name: String) -> String { shown.contains(name) ? name : "other" }
        var stacks: [Int64: [String: Int128]] = [:]
        for (period, parts) in values {
            for (name, value) in parts { stacks[period, default: [:]][seriesOf(name), default: 0] += value }
        }
        let maximum = max(1, stacks.values.map { $0.values.reduce(0, +) }.max() ?? 1)

        let plotWidth = Self.width - Self.left - Self.right, plotHeight = Self.height - Self.top - Self.bottom
        // Positions scale with integers: a month by hour (720 bars) still fits the plot, a pixel or so each.
        let count = max(1, periods.count)
        let slot = max(1, plotWidth / count)
        let barWidth = max(1, plotWidth * 4 / (5 * count))
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Self.width)" height="\(Self.height)" \
            viewBox="0 0 \(Self.width) \(Self.height)" font-family="sans-serif" font-size="11">
            <rect width="\(Self.width)" height="\(Self.height)" fill="white"/>
            <text x="\(Self.left)" y="22" font-size="14" font-weight="bold">\(Self.escape(title))</text>

            """
        // Axis and four gridlines, labelled with exact values.
        for tick in 0...4 {
            let value = maximum * Int128(tick) / 4
            let y = Self.top + plotHeight - Int(Int128(plotHeight) * Int128(tick) / 4)
            svg +=
                "<line x1=\"\(Self.left)\" y1=\"\(y)\" x2=\"\(Self.left + plotWidth)\" y2=\"\(y)\" stroke=\"#ddd\"/>\n"
            svg +=
                "<text x=\"\(Self.left - 6)\" y=\"\(y + 4)\" "
                + "text-anchor=\"end\">\(Self.text(value, meter, adjustment: isAdjustment))</text>\n"
        }
        let yLabel =
            stack == .meter
            ? "seconds (meter × seconds)"
            : isAdjustment ? meter : meter == "running" ? "running_seconds" : "\(meter)_seconds"
        svg +=
            "<text x=\"14\" y=\"\(Self.top + plotHeight / 2)\" transform=\"rotate(-90 "
            + "14 \(Self.top + plotHeight / 2))\" text-anchor=\"middle\">\(Self.escape(yLabel))</text>\n"
        // Bars.
        // A label needs about 80 pixels; label every n-th period so that none overlap.
        let labelEvery = max(1, (80 + slot - 1) / slot)
        for (index, period) in periods.enumerated() {
            let x = Self.left + index * plotWidth / count + (plotWidth / count - barWidth) / 2
            var base = Int128(0)
            for (seriesIndex, name) in series.enumerated() {
                guard let value = stacks[period]?[name], value > 0 else { continue }
                let y0 = Int(Int128(plotHeight) * base / maximum),
                    y1 = Int(Int128(plotHeight) * (base + value) / maximum)
                base += value
                let exact = Self.text(value, stack == .meter ? name : meter, adjustment: isAdjustment)
                let start = Timestamp(microseconds: period)
                let local = start.rfc3339(in: report.timeZone)
                svg +=
                    "<rect class=\"bar\" x=\"\(x)\" y=\"\(Self.top + plotHeight - y1)\" width=\"\(barWidth)\" "
                    + "height=\"\(max(0, y1 - y0))\" fill=\"\(Self.colour(seriesIndex, name))\" "
                    + "data-period=\"\(start.rfc3339)\" data-series=\"\(Self.escape(name))\" data-value=\"\(exact)\">"
                    + "<title>\(Self.escape(name)) \(local): \(exact)</title></rect>\n"
            }
            if index % labelEvery == 0 {
                // Labels are the local date (and time for hours) in the report's zone.
                let text = Timestamp(microseconds: period).rfc3339(in: report.timeZone)
                let label =
                    report.granularity == .hour
                    ? text.dropFirst(5).prefix(5) + " " + text.dropFirst(11).prefix(5)
                    : report.granularity == .month ? text.prefix(7) : text.prefix(10)
                svg +=
                    "<text x=\"\(x + barWidth / 2)\" y=\"\(Self.top + plotHeight + 16)\" "
                    + "text-anchor=\"middle\">\(label)</text>\n"
            }
        }
        svg +=
            "<line x1=\"\(Self.left)\" y1=\"\(Self.top + plotHeight)\" x2=\"\(Self.left + plotWidth)\" "
            + "y2=\"\(Self.top + plotHeight)\" stroke=\"#333\"/>\n"
        // Legend.
        for (index, name) in series.enumerated() {
            let y = Self.top + index * 18
            svg +=
                "<rect x=\"\(Self.width - Self.right + 16)\" y=\"\(y)\" width=\"12\" height=\"12\" "
                + "fill=\"\(Self.colour(index, name))\"/>"
            svg += "<text x=\"\(Self.width - Self.right + 34)\" y=\"\(y + 10)\">\(Self.escape(name))</text>\n"
        }
        if series.isEmpty {
            svg +=
                "<text x=\"\(Self.left + plotWidth / 2)\" y=\"\(Self.top + plotHeight / 2)\" "
                + "text-anchor=\"middle\">no usage in this interval</text>\n"
        }
        svg += "</svg>\n"
        return svg
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    /// Writes the SVG to `path`, replacing it whole (a temporary file renamed into place).
    func write(to path: String) throws {
        let temporary = path + ".tmp"
        guard let file = fopen(temporary, "w") else {
            throw CommandFailure("cannot write the chart to '\(path)': \(String(cString: strerror(errno)))")
        }
        let bytes = Array(svg().utf8)
        let written = fwrite(bytes, 1, bytes.count, file)
        let closed = fclose(file)
        guard written == bytes.count, closed == 0, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw CommandFailure("cannot write the chart to '\(path)': \(reason)")
        }
    }
}
