/// An instant in UTC with microsecond resolution: microseconds since 1970-01-01T00:00:00Z.
///
/// The ledger's range is the years 0000 to 9999 (what RFC 3339 can write); arithmetic on timestamps is
/// integer arithmetic, never floating point.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Microseconds since the Unix epoch (negative before 1970).
    public var microseconds: Int64

    /// Wraps a count of microseconds since the Unix epoch.
    public init(microseconds: Int64) { self.microseconds = microseconds }

    /// The earliest instant the ledger accepts: 0000-01-01T00:00:00Z.
    public static let earliest = Timestamp(microseconds: -62_167_219_200_000_000)
    /// The latest instant the ledger accepts: 9999-12-31T23:59:59.999999Z.
    public static let latest = Timestamp(microseconds: 253_402_300_799_999_999)

    /// Microseconds in one second.
    public static let microsecondsPerSecond: Int64 = 1_000_000
    /// Microseconds in one hour.
    public static let microsecondsPerHour: Int64 = 3_600_000_000

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.microseconds < rhs.microseconds }

    /// This instant plus `microseconds`, or nil if that leaves the 64-bit range.
    public func adding(microseconds delta: Int64) -> Timestamp? {
        let (sum, overflow) = microseconds.addingReportingOverflow(delta)
        return overflow ? nil : Timestamp(microseconds: sum)
    }

    /// Whether the instant lies in the years 0000 to 9999.
    public var isInSupportedRange: Bool { self >= .earliest && self <= .latest }

    /// The RFC 3339 text of this instant in UTC: no fraction when whole seconds, otherwise milliseconds
    /// or microseconds (e.g. `2026-11-01T10:00:00.250Z`).
    public var description: String { rfc3339 }

    /// See `description`.
    public var rfc3339: String { Self.format(microseconds, suffix: "Z") }

    /// The RFC 3339 text of this instant's local time in `zone`, with its offset (`2026-03-29T03:00:00+02:00`;
    /// `Z` in UTC).
    public func rfc3339(in zone: UsageTimeZone) -> String {
        let offset = zone.offsetSeconds(at: self)
        guard offset != 0 || zone != .utc else { return rfc3339 }
        let magnitude = abs(offset)
        var suffix = offset < 0 ? "-" : "+"
        appendPadded(&suffix, magnitude / 3600, width: 2)
        suffix.append(":")
        appendPadded(&suffix, (magnitude / 60) % 60, width: 2)
        return Self.format(microseconds &+ offset * Self.microsecondsPerSecond, suffix: suffix)
    }

    private static func format(_ microseconds: Int64, suffix: String) -> String {
        let (seconds, fraction) = divmodFloor(microseconds, Self.microsecondsPerSecond)
        let (days, secondOfDay) = divmodFloor(seconds, 86_400)
        let (year, month, day) = civil(fromDays: days)
        var text = ""
        text.reserveCapacity(27)
        appendPadded(&text, year, width: 4)
        text.append("-")
        appendPadded(&text, month, width: 2)
        text.append("-")
        appendPadded(&text, day, width: 2)
        text.append("T")
        appendPadded(&text, secondOfDay / 3600, width: 2)
        text.append(":")
        appendPadded(&text, (secondOfDay / 60) % 60, width: 2)
        text.append(":")
        appendPadded(&text, secondOfDay % 60, width: 2)
        if fraction != 0 {
            text.append(".")
            if fraction % 1000 == 0 {
                appendPadded(&text, fraction / 1000, width: 3)
            } else {
                appendPadded(&text, fraction, width: 6)
            }
        }
        text.append(suffix)
        return text
    }

    /// The start of the UTC hour that contains this instant.
    public var hourFloor: Timestamp {
        Timestamp(microseconds: microseconds - divmodFloor(microseconds, Self.microsecondsPerHour).1)
    }

    /// Parses RFC 3339 (`2026-11-01T10:00:00.250Z`, `2026-11-01T11:00:00+01:00`): `T` or `t`, `Z`, `z` or
    /// an offset, at most 6 fractional digits, no leap second, a result in the years 0000 to 9999.
    ///
    /// - Throws: `LedgerError.invalidField` with field `timestamp`, quoting the text and the reason.
    public init(rfc3339 text: String) throws(LedgerError) {
        do { self = try Self.parse(rfc3339: text) } catch {
            throw .invalidField(
                field: "timestamp", reason: "'\(text.prefix(80))' is not an RFC 3339 timestamp: \(error.reason)")
        }
    }

    /// Parses RFC 3339 as `init(rfc3339:)` does, throwing only the reason (for callers naming their field).
    static func parse(rfc3339 text: String) throws(TimestampParseError) -> Timestamp {
        var copy = text
        return try copy.withUTF8 { bytes in Result { () throws(TimestampParseError) in try Self.parse(bytes) } }.get()
    }

    static func parse(_ s: UnsafeBufferPointer<UInt8>) throws(TimestampParseError) -> Timestamp {
        var i = 0
        func digits(_ count: Int, _ what: String) throws(TimestampParseError) -> Int64 {
            guard i + count <= s.count else { throw TimestampParseError("ends before the \(what)") }
            var value: Int64 = 0
            for _ in 0..<count {
                let c = s[i]
                guard c >= 0x30, c <= 0x39 else {
                    throw TimestampParseError("expected a digit in the \(what) at character \(i + 1)")
                }
                value = value * 10 + Int64(c - 0x30)
                i += 1
            }
            return value
        }
        func expect(_ char: UInt8, _ what: String) throws(TimestampParseError) {
            guard i < s.count, s[i] == char else { throw TimestampParseError("expected \(what) at character \(i + 1)") }
            i += 1
        }
        let year = try digits(4, "year")
        try expect(UInt8(ascii: "-"), "'-' after the year")
        let month = try digits(2, "month")
        try expect(UInt8(ascii: "-"), "'-' after the month")
        let day = try digits(2, "day")
        guard i < s.count, s[i] == UInt8(ascii: "T") || s[i] == UInt8(ascii: "t") else {
            throw TimestampParseError("expected 'T' between date and time at character \(i + 1)")
        }
        i += 1
        let hour = try digits(2, "hour")
        try expect(UInt8(ascii: ":"), "':' after the hour")
        let minute = try digits(2, "minute")
        try expect(UInt8(ascii: ":"), "':' after the minute")
        let second = try digits(2, "second")
        var fraction: Int64 = 0
        if i < s.count, s[i] == UInt8(ascii: ".") {
            i += 1
            var count = 0
            while i < s.count, s[i] >= 0x30, s[i] <= 0x39 {
                count += 1
                guard count <= 6 else {
                    throw TimestampParseError("more than 6 fractional digits (the ledger keeps microseconds)")
                }
                fraction = fraction * 10 + Int64(s[i] - 0x30)
                i += 1
            }
            guard count > 0 else { throw TimestampParseError("expected a digit after '.'") }
            for _ in count..<6 { fraction *= 10 }
        }
        var offsetSeconds: Int64 = 0
        guard i < s.count else {
            throw TimestampParseError("missing time zone: end with 'Z' or an offset like '+01:00'")
        }
        switch s[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            i += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let sign: Int64 = s[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            let offsetHour = try digits(2, "offset hour")
            try expect(UInt8(ascii: ":"), "':' in the offset")
            let offsetMinute = try digits(2, "offset minute")
            guard offsetHour <= 23, offsetMinute <= 59 else { throw TimestampParseError("offset out of range") }
            offsetSeconds = sign * (offsetHour * 3600 + offsetMinute * 60)
        default:
            throw TimestampParseError("expected 'Z' or an offset at character \(i + 1)")
        }
        guard i == s.count else {
            throw TimestampParseError("unexpected text after the time zone at character \(i + 1)")
        }
        guard (1...12).contains(month) else { throw TimestampParseError("month \(month) is not 01 to 12") }
        let lastDay = daysIn(month: month, year: year)
        guard day >= 1, day <= lastDay else {
            throw TimestampParseError("day \(day) is not in month \(month) of year \(year)")
        }
        guard hour <= 23 else { throw TimestampParseError("hour \(hour) is not 00 to 23") }
        guard minute <= 59 else { throw TimestampParseError("minute \(minute) is not 00 to 59") }
        guard second <= 59 else {
            throw TimestampParseError(
                second == 60
                    ? "leap seconds (:60) are not accepted; use :59.999999 or the next second"
                    : "second \(second) is not 00 to 59")
        }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        let result = Timestamp(microseconds: seconds * microsecondsPerSecond + fraction)
        guard result.isInSupportedRange else {
            throw TimestampParseError("the instant in UTC is outside the years 0000 to 9999")
        }
        return result
    }
}

/// Why a text is not an RFC 3339 timestamp the ledger accepts (inside the module; callers get a
/// `LedgerError` naming their field).
struct TimestampParseError: Error, Sendable, Equatable {
    /// The reason, for a person.
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

// MARK: - Durations

extension Timestamp {
    /// This instant moved by `duration`, which is truncated toward zero to whole microseconds. Like integer
    /// `+`, it traps when the result leaves the 64-bit range (about ±292,000 years); `adding(_:)` checks.
    public static func + (instant: Timestamp, duration: Duration) -> Timestamp {
        guard let moved = instant.adding(duration) else { preconditionFailure("Timestamp + Duration overflows") }
        return moved
    }

    /// This instant moved back by `duration` (truncated toward zero to whole microseconds); traps on overflow.
    public static func - (instant: Timestamp, duration: Duration) -> Timestamp {
        guard let delta = Self.microseconds(of: duration), delta != .min,
            let moved = instant.adding(microseconds: -delta)
        else { preconditionFailure("Timestamp - Duration overflows") }
        return moved
    }

    /// Moves `instant` by `duration`; traps on overflow.
    public static func += (instant: inout Timestamp, duration: Duration) { instant = instant + duration }

    /// Moves `instant` back by `duration`; traps on overflow.
    public static func -= (instant: inout Timestamp, duration: Duration) { instant = instant - duration }

    /// The time from `earlier` to `later`, exact to the microsecond (negative when `later` is earlier). It
    /// cannot fail: every difference of two timestamps fits a `Duration`.
    public static func - (later: Timestamp, earlier: Timestamp) -> Duration {
        // Seconds and the rest apart: the difference of two Int64 microsecond counts can exceed Int64.
        let seconds = later.microseconds / 1_000_000 - earlier.microseconds / 1_000_000
        let rest = later.microseconds % 1_000_000 - earlier.microseconds % 1_000_000
        return .seconds(seconds) + .microseconds(rest)
    }

    /// This instant moved by `duration` (truncated toward zero to whole microseconds), or nil when the
    /// result leaves the 64-bit range.
    public func adding(_ duration: Duration) -> Timestamp? {
        Self.microseconds(of: duration).flatMap { adding(microseconds: $0) }
    }

    /// `duration` in whole microseconds, truncated toward zero, or nil beyond Int64.
    static func microseconds(of duration: Duration) -> Int64? {
        let (seconds, attoseconds) = duration.components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000)
        guard !overflow else { return nil }
        let (total, carry) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000_000)
        return carry ? nil : total
    }
}

@inline(__always)
package func divmodFloor(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
    let q = a / b, r = a % b
    return r < 0 ? (q - 1, r + b) : (q, r)
}

func isLeap(_ year: Int64) -> Bool { year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) }

func daysIn(month: Int64, year: Int64) -> Int64 {
    switch month {
    case 2: return isLeap(year) ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
}

// Howard Hinnant's days_from_civil / civil_from_days: exact proleptic Gregorian calendar arithmetic.
package func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = (month + 9) % 12
    let doy = (153 * mp + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}

package func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
    let z = z0 + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let day = doy - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
}

private func appendPadded(_ text: inout String, _ value: Int64, width: Int) {
    let digits = String(value)
    if digits.utf8.count < width { text.append(String(repeating: "0", count: width - digits.utf8.count)) }
    text.append(digits)
}
