import Testing
@testable import LedgerCore

@Suite("RFC 3339 timestamps")
struct TimestampTests {
    @Test(
        "parses Z, offsets and fractions to UTC microseconds",
        arguments: [
            ("2026-11-01T10:00:00Z", "2026-11-01T10:00:00Z"),
            ("2026-11-01T10:00:00.250Z", "2026-11-01T10:00:00.250Z"),
            ("2026-11-01T10:00:00.000001Z", "2026-11-01T10:00:00.000001Z"),
            ("2026-11-01t10:00:00z", "2026-11-01T10:00:00Z"),
            ("2026-11-01T11:30:00+01:30", "2026-11-01T10:00:00Z"),
            ("2026-11-01T04:00:00-06:00", "2026-11-01T10:00:00Z"),
            ("2024-02-29T23:59:59.999999Z", "2024-02-29T23:59:59.999999Z"),
            ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.500Z"),
            ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
        ])
    func parses(input: String, canonical: String) throws {
        #expect(try Timestamp(rfc3339: input).rfc3339 == canonical)
    }

    @Test("the epoch is zero and an hour floors exactly")
    func epoch() throws {
        #expect(try Timestamp(rfc3339: "1970-01-01T00:00:00Z").microseconds == 0)
        #expect(try Timestamp(rfc3339: "1969-12-31T23:30:00Z").hourFloor == Timestamp(rfc3339: "1969-12-31T23:00:00Z"))
    }

    @Test(
        "rejects what RFC 3339 or the ledger does not allow, saying why",
        arguments: [
            ("2026-11-01T10:00:00", "missing time zone"),
            ("2026-11-01 10:00:00Z", "expected 'T'"),
            ("2026-11-01T10:00:00.1234567Z", "more than 6 fractional digits"),
            ("2026-11-01T23:59:60Z", "leap seconds"),
            ("2026-02-29T10:00:00Z", "day 29 is not in month 2"),
            ("2026-13-01T10:00:00Z", "month 13"),
            ("2026-11-01T24:00:00Z", "hour 24"),
            ("2026-11-01T10:00:00+24:00", "offset out of range"),
            ("0000-01-01T00:30:00+01:00", "outside the years 0000 to 9999"),
            ("2026-11-01T10:00:00Zjunk", "unexpected text"),
        ])
    func rejects(input: String, reason: String) {
        #expect {
            try Timestamp(rfc3339: input)
        } throws: { error in
            // Every error of the library is a LedgerError, the timestamp parser's too.
            guard case .invalidField(let field, let message) = error as? LedgerError else { return false }
            return field == "timestamp" && message.contains(reason) && message.contains("'\(input.prefix(80))'")
        }
    }
}
