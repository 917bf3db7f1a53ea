import Foundation
import Testing
@testable import LedgerCore
@testable import UsageLedger

/// One case of `Tests/Fixtures/zones/zones.json`: where the local days and months of a zone begin, as
/// Python's zoneinfo computed them from the same tzdata when the test was written (`make-zones.py`).
private struct ZoneCase: Decodable {
    var zone: String
    var why: String
    var dayStarts: [String]
    var monthStarts: [String]

    enum CodingKeys: String, CodingKey {
        case zone, why
        case dayStarts = "day_starts"
        case monthStarts = "month_starts"
    }
}

private func zoneCases() throws -> [ZoneCase] {
    let data = try Data(contentsOf: URL(fileURLWithPath: repositoryRoot + "/Tests/Fixtures/zones/zones.json"))
    return try JSONDecoder().decode([ZoneCase].self, from: data)
}

private func starts(
    _ zone: UsageTimeZone, _ granularity: UsageGranularity, from: Timestamp, to: Timestamp
) throws -> [String] {
    try UsageBuckets(from: from, end: to, granularity: granularity, zone: zone).starts(from: from.microseconds)
        .map { Timestamp(microseconds: $0).rfc3339 }
}

@Suite("Calendar periods in time zones")
struct TimeZoneTests {
    @Test("local days and months begin where Python's zoneinfo says, across DST changes and rule changes")
    func periodsMatchZoneinfo() throws {
        let cases = try zoneCases()
        #expect(cases.count == 8)
        for zoneCase in cases {
            let zone = try UsageTimeZone(zoneCase.zone)
            let first = ts(zoneCase.dayStarts[0]), last = ts(zoneCase.dayStarts[zoneCase.dayStarts.count - 1])
            let end = last + .seconds(3600)
            #expect(
                try starts(zone, .day, from: first, to: end) == zoneCase.dayStarts,
                "\(zoneCase.zone): \(zoneCase.why)")
            let months = try starts(zone, .month, from: first, to: end).filter { ts($0) > first }
            #expect(months == zoneCase.monthStarts.filter { ts($0) > first }, "\(zoneCase.zone): months")
        }
    }

    /// A ledger of one resource of org-1 running at `cpu` 2 since `start`, rolled up to the test clock.
    static func runningSince(_ start: String, in dir: TemporaryDirectory) throws -> Ledger {
        let ledger = try openLedger(dir)
        try ledger.append(event(.started, "s", "vm/a", at: start, footprint: ["cpu": 2]))
        _ = try ledger.rollUp(now: testNow)
        return ledger
    }

    @Test("a DST day is 23 or 25 hours long, in both hemispheres and when clocks change at midnight")
    func dstDayLengths() throws {
        let dir = try TemporaryDirectory()
        let ledger = try Self.runningSince("2026-01-01T00:00:00Z", in: dir)
        func hours(_ zone: String, _ from: String, _ to: String) throws -> [Int128] {
            try ledger.usage(
                .owner("org-1"), from: ts(from), to: ts(to), granularity: .day, timeZone: try UsageTimeZone(zone)
            ).rows.map { $0.amounts.runningMicroseconds / 3_600_000_000 }
        }
        // Berlin: 2026-03-28, 29 (23 h), 30; 2026-10-24, 25 (25 h), 26 — local midnights as UTC.
        #expect(try hours("Europe/Berlin", "2026-03-27T23:00:00Z", "2026-03-30T22:00:00Z") == [24, 23, 24])
        #expect(try hours("Europe/Berlin", "2026-10-23T22:00:00Z", "2026-10-26T23:00:00Z") == [24, 25, 24])
        // Sydney: DST ends 2026-04-05 (25 h) and starts 2026-10-04 (23 h).
        #expect(try hours("Australia/Sydney", "2026-04-03T13:00:00Z", "2026-04-06T14:00:00Z") == [24, 25, 24])
        #expect(try hours("Australia/Sydney", "2026-10-02T14:00:00Z", "2026-10-05T13:00:00Z") == [24, 23, 24])
        // Santiago: 2026-09-06 begins at 01:00 (midnight was skipped) and is 23 hours long.
        #expect(try hours("America/Santiago", "2026-09-05T04:00:00Z", "2026-09-07T03:00:00Z") == [24, 23])
        // Months: March 2026 in Berlin is 743 hours, April 720.
        let months = try ledger.usage(
            .owner("org-1"), from: ts("2026-02-28T23:00:00Z"), to: ts("2026-04-30T22:00:00Z"), granularity: .month,
            timeZone: try UsageTimeZone("Europe/Berlin"))
        #expect(months.rows.map { $0.amounts.runningMicroseconds / 3_600_000_000 } == [743, 720])
        #expect(months.rows.map(\.periodEnd) == [ts("2026-03-31T22:00:00Z"), ts("2026-04-30T22:00:00Z")])
        #expect(
            months.rows.map { $0.periodStart.rfc3339(in: months.timeZone) } == [
                "2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00",
            ])
    }

    /// A small fleet with starts, scalings, stops and adjustments at odd instants, rolled up unless not.
    static func fleet(_ dir: TemporaryDirectory, name: String = "ledger", rolledUp: Bool = true) throws -> Ledger {
        let ledger = try openLedger(dir, name: name)
        var events: [UsageEvent] = []
        for n in 0..<4 {
            let r = "app/r\(n)"
            events.append(event(.started, "\(n)-1", r, at: "2026-03-0\(1 + n)T0\(n):17:23Z", footprint: ["cpu": 1]))
            events.append(
                event(.started, "\(n)-2", r, at: "2026-03-1\(n)T18:4\(n):05.250Z", footprint: ["cpu": Int64(2 + n)]))
            events.append(
                event(.adjustment, "\(n)-3", r, at: "2026-03-1\(n)T18:15:00Z", deltas: ["bytes": Int64(100 * n - 7)]))
            if n % 2 == 0 { events.append(event(.stopped, "\(n)-4", r, at: "2026-03-2\(n)T18:50:00Z")) }
        }
        _ = try ledger.append(contentsOf: events)
        if rolledUp { _ = try ledger.rollUp(now: testNow) }
        return ledger
    }

    @Test(
        "in zones off the whole hour every period is exact: it equals the usage of its own range, and they sum up",
        arguments: ["Asia/Kolkata", "Asia/Kathmandu", "+05:30", "-03:30", "America/St_Johns", "Europe/Berlin"])
    func exactPeriods(zoneName: String) throws {
        let dir = try TemporaryDirectory()
        let ledger = try Self.fleet(dir)
        // The same events never rolled up: every hour is folded from the log, no row, span or owner sum read.
        let folded = try Self.fleet(dir, name: "folded", rolledUp: false)
        let zone = try UsageTimeZone(zoneName)
        let from = ts("2026-03-01T00:00:00Z"), to = ts("2026-04-02T07:00:00Z")
        let whole = try ledger.usage(.owner("org-1"), from: from, to: to).rows[0].amounts
        for granularity in [UsageGranularity.hour, .day, .month] {
            for grouped in [false, true] {
                let report = try ledger.usage(
                    .owner("org-1"), from: from, to: to, granularity: granularity, timeZone: zone,
                    groupByResource: grouped)
                let fromLog = try folded.usage(
                    .owner("org-1"), from: from, to: to, granularity: granularity, timeZone: zone,
                    groupByResource: grouped)
                #expect(report.rows == fromLog.rows, "\(zoneName) \(granularity) grouped \(grouped): rows vs the log")
                var sum = UsageAmounts()
                for row in report.rows {
                    try sum.add(row.amounts)
                    let subject = row.resource.map(UsageSubject.resource) ?? .owner("org-1")
                    let own = try ledger.usage(subject, from: row.periodStart, to: row.periodEnd).rows.first?.amounts
                    #expect(own == row.amounts, "\(zoneName) \(granularity) \(row.periodStart)")
                }
                #expect(sum == whole, "\(zoneName) \(granularity) grouped \(grouped)")
            }
        }
        // Hours begin at local :00 (at :30 or :15 UTC in zones off the whole hour), days at local midnight,
        // months at local midnight of the first.
        for (granularity, local) in [(UsageGranularity.hour, ":00:00"), (.day, "T00:00:00"), (.month, "-01T00:00:00")] {
            let rows = try ledger.usage(
                .owner("org-1"), from: from, to: to, granularity: granularity, timeZone: zone
            ).rows
            #expect(rows.count > 1)
            for row in rows.dropFirst() {
                #expect(row.periodStart.rfc3339(in: zone).contains(local), "\(zoneName) \(granularity)")
            }
        }
    }

    @Test("zones by name and by offset; an unknown zone is invalid_field naming it")
    func parsing() throws {
        #expect(try UsageTimeZone("+05:30").offsetSeconds(at: testNow) == 19_800)
        #expect(try UsageTimeZone("-08").offsetSeconds(at: testNow) == -28_800)
        #expect(try UsageTimeZone("UTC") == .utc)
        #expect(try UsageTimeZone("Asia/Kathmandu").offsetSeconds(at: testNow) == 20_700)
        // The footer's rule, past the file's last transition (2037): CEST in July 2050.
        #expect(try UsageTimeZone("Europe/Berlin").offsetSeconds(at: ts("2050-07-01T00:00:00Z")) == 7200)
        for bad in ["Mars/Olympus", "+24:00", "../etc/passwd", "Europe/../UTC", "", "+5:30"] {
            #expect {
                try UsageTimeZone(bad)
            } throws: { error in
                guard case LedgerError.invalidField(let field, let reason) = error else { return false }
                return field == "time_zone" && reason.contains("'\(bad)'")
            }
        }
    }

    @Test("a damaged or cut TZif file is refused or read, never a crash; what it reads gives periods")
    func damagedZoneFiles() throws {
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: "/usr/share/zoneinfo/Australia/Sydney")))
        var random = SystemRandomNumberGenerator()
        var refused = 0
        for trial in 0..<3000 {
            var bytes = original
            if trial % 3 == 0 {
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &random)))
            } else {
                for _ in 0..<(1 + trial % 4) {
                    let at = Int.random(in: 0..<bytes.count, using: &random)
                    bytes[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &random))
                }
            }
            guard let zone = try? UsageTimeZone(identifier: "damaged", tzif: bytes) else {
                refused += 1
                continue
            }
            let from = ts("2026-03-25T00:00:00Z")
            _ = try? UsageBuckets(from: from, end: from + .seconds(40 * 86_400), granularity: .day, zone: zone)
            _ = try? UsageBuckets(from: from, end: from + .seconds(3 * 86_400), granularity: .hour, zone: zone)
            _ = zone.offsetSeconds(at: ts("2045-01-01T00:00:00Z"))
        }
        #expect(refused > 0)
    }

    @Test("the CLI shows local times, says the zone in JSON, labels the chart by local date; unknown zones exit 2")
    func commandLine() throws {
        let dir = try TemporaryDirectory()
        _ = try Self.runningSince("2026-03-01T00:00:00Z", in: dir)
        let db = dir.child("ledger"), chart = dir.child("usage.svg")
        let base = [
            "usage", "--db", db, "--owner", "org-1", "--from", "2026-03-27T23:00:00Z", "--to", "2026-03-30T22:00:00Z",
            "--granularity", "day", "--time-zone", "Europe/Berlin", "--now", "2026-04-01T00:00:00Z",
        ]
        let table = try runCLI(base + ["--format", "table", "--chart", chart])
        #expect(table.status == 0, "\(table.stderr)")
        #expect(table.stdout.contains("2026-03-29T00:00:00+01:00  2026-03-30T00:00:00+02:00"), "\(table.stdout)")
        let svg = try String(contentsOfFile: chart, encoding: .utf8)
        #expect(svg.contains(">2026-03-29</text>") && svg.contains("(Europe/Berlin)"), "\(svg.prefix(400))")
        let json = try runCLI(base + ["--format", "json"])
        #expect(json.stdout.contains(#""time_zone":"Europe/Berlin""#))
        #expect(json.stdout.contains(#""period_start":"2026-03-28T23:00:00Z","period_end":"2026-03-29T22:00:00Z""#))
        let unknown = try runCLI(Array(base.dropLast(4)) + ["--time-zone", "Mars/Olympus"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("unknown time zone 'Mars/Olympus'"), "\(unknown.stderr)")
    }
}
