#if canImport(Glibc)
import Glibc
#endif

/// The zone that calendar buckets (days, months, and hours in zones whose offset is not a whole hour)
/// follow: UTC, a fixed offset such as `+05:30`, or a zone of the system's tz database (`Europe/Berlin`).
///
/// Named zones are read from the TZif files of Debian's `tzdata` (`/usr/share/zoneinfo`, or `$TZDIR`) by
/// the small reader below (RFC 8536, with the POSIX TZ rule of its footer for instants after the last
/// transition), not by Foundation's `TimeZone`: the library does not link Foundation, which would load
/// ICU into every process that embeds it.
public struct UsageTimeZone: Sendable, Hashable, CustomStringConvertible {
    /// The name it was made from: `UTC`, an offset such as `+05:30`, or an IANA name.
    public let identifier: String
    /// UTC seconds at which the offset changes, ascending.
    let transitions: [Int64]
    /// The offset (seconds east of UTC) from each transition on.
    let offsets: [Int32]
    /// The offset before the first transition (or always, without transitions or a rule).
    let initialOffset: Int32
    /// The rule after the last transition.
    let rule: PosixZoneRule?

    /// Coordinated Universal Time.
    public static let utc = UsageTimeZone(identifier: "UTC", fixed: 0)

    private init(identifier: String, fixed offset: Int32) {
        self.init(identifier: identifier, transitions: [], offsets: [], initialOffset: offset, rule: nil)
    }

    private init(
        identifier: String, transitions: [Int64], offsets: [Int32], initialOffset: Int32, rule: PosixZoneRule?
    ) {
        self.identifier = identifier
        self.transitions = transitions
        self.offsets = offsets
        self.initialOffset = initialOffset
        self.rule = rule
    }

    /// The zone `identifier` names: `UTC` (or `Z`), a fixed offset `+HH:MM` / `-HH:MM` / `+HH`, or an IANA
    /// zone of the tz database.
    ///
    /// - Throws: `LedgerError.invalidField` (field `time_zone`) naming it when it is none of these.
    public init(_ identifier: String) throws(LedgerError) {
        if identifier == "UTC" || identifier == "Z" {
            self = .utc
            return
        }
        if let offset = Self.fixedOffset(identifier) {
            self.init(identifier: identifier, fixed: offset)
            return
        }
        func unknown(_ why: String) -> LedgerError {
            .invalidField(field: "time_zone", reason: "unknown time zone '\(identifier)': \(why)")
        }
        guard Self.isZoneName(identifier) else {
            throw unknown("not UTC, an offset such as +05:30, or a tz database name such as Europe/Berlin")
        }
        let directory = getenv("TZDIR").map { String(cString: $0) } ?? "/usr/share/zoneinfo"
        guard let bytes = Self.readFile(directory + "/" + identifier) else {
            throw unknown("no such zone in \(directory)")
        }
        do throws(TZifError) {
            self = try Self(identifier: identifier, tzif: bytes)
        } catch {
            throw unknown("\(directory)/\(identifier) is not a usable TZif file (\(error.reason))")
        }
    }

    /// The zone a TZif file's bytes describe.
    init(identifier: String, tzif bytes: [UInt8]) throws(TZifError) {
        let parsed = try TZif(bytes)
        self.init(
            identifier: identifier, transitions: parsed.transitions, offsets: parsed.offsets,
            initialOffset: parsed.initialOffset, rule: parsed.rule)
    }

    public var description: String { identifier }

    /// The offset from UTC in effect at `instant`, in seconds east.
    public func offsetSeconds(at instant: Timestamp) -> Int64 {
        let seconds = divmodFloor(instant.microseconds, 1_000_000).0
        return Int64(offset(atSecond: seconds))
    }

    package func offset(atSecond t: Int64) -> Int32 {
        guard let index = transitions.lastIndex(notAfter: t) else { return initialOffset }
        if let rule, index == transitions.count - 1 { return rule.offset(atSecond: t) ?? offsets[index] }
        return offsets[index]
    }

    /// The UTC seconds of the changes of offset in `[from, to)`, ascending (rule changes included).
    package func changes(from: Int64, to: Int64) -> [Int64] {
        let first = (transitions.lastIndex(notAfter: from) ?? -1) + 1
        var found = Array(transitions[first...].prefix { $0 < to })
        if let rule, to > (transitions.last ?? .min) {
            let start = max(from, transitions.last ?? from)
            found += rule.changes(from: start, to: to)
        }
        return found.filter { offset(atSecond: $0 - 1) != offset(atSecond: $0) }
    }

    /// The first instant (UTC seconds) whose local time is at or after the local time `local` (seconds of
    /// the local calendar): the instant itself when it exists, the earlier one when clocks went back over
    /// it, the end of the gap when clocks skipped it.
    package func firstInstant(atOrAfterLocal local: Int64) -> Int64 {
        let window = 36 * 3600  // wider than any offset
        var start = local - Int64(window)
        var cuts = changes(from: start, to: local + Int64(window))
        cuts.append(local + Int64(window))
        for end in cuts {
            let offset = Int64(self.offset(atSecond: start))
            if local < start + offset { return start }  // skipped: the gap ends here
            if local < end + offset { return local - offset }
            start = end
        }
        return local - Int64(offset(atSecond: local))
    }

    /// `+HH:MM`, `-HH:MM`, `+HH` or `-HH` (hours up to 23), in seconds east of UTC.
    static func fixedOffset(_ text: String) -> Int32? {
        let bytes = Array(text.utf8)
        guard bytes.count == 3 || bytes.count == 6, bytes[0] == 0x2B || bytes[0] == 0x2D else { return nil }
        func number(_ at: Int) -> Int32? {
            guard (0x30...0x39).contains(bytes[at]), (0x30...0x39).contains(bytes[at + 1]) else { return nil }
            return Int32(bytes[at] - 0x30) * 10 + Int32(bytes[at + 1] - 0x30)
        }
        guard let hours = number(1), hours <= 23 else { return nil }
        var minutes: Int32 = 0
        if bytes.count == 6 {
            guard bytes[3] == 0x3A, let value = number(4), value <= 59 else { return nil }
            minutes = value
        }
        let seconds = hours * 3600 + minutes * 60
        return bytes[0] == 0x2D ? -seconds : seconds
    }

    /// A tz database name: letters, digits, `_`, `-`, `+` and `/`-separated parts, none empty or starting
    /// with a dot (so that it cannot leave the zone directory).
    static func isZoneName(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard !text.isEmpty, text.utf8.count <= 255 else { return false }
        return parts.allSatisfy { part in
            guard let first = part.utf8.first, first != 0x2E else { return false }
            return part.utf8.allSatisfy { byte in
                (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
                    || byte == 0x5F || byte == 0x2D || byte == 0x2B || byte == 0x2E
            }
        }
    }

    private static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= 1 << 20 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return got == bytes.count ? bytes : nil
    }
}

extension Array where Element == Int64 {
    /// The index of the last element at or before `value` in this ascending array; nil when all are after.
    package func lastIndex(notAfter value: Int64) -> Int? {
        var low = 0, high = count  // the answer is the index before the first element after `value`
        while low < high {
            let middle = (low + high) / 2
            if self[middle] <= value { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? nil : low - 1
    }
}

/// Why a TZif file could not be read.
struct TZifError: Error {
    let reason: String
}

/// The parts of a TZif file (RFC 8536) the ledger uses: version 2 or later, 64-bit transition times.
struct TZif {
    var transitions: [Int64] = []
    var offsets: [Int32] = []
    var initialOffset: Int32 = 0
    var rule: PosixZoneRule?

    init(_ bytes: [UInt8]) throws(TZifError) {
        var reader = Reader(bytes: bytes)
        let first = try reader.header()
        guard first.version >= 2 else { throw TZifError(reason: "version 1 files hold 32-bit times only") }
        try reader.skip(first.blockSize(timeBytes: 4))
        let header = try reader.header()
        guard header.leapCount == 0 else { throw TZifError(reason: "leap-second zones are not supported") }
        guard header.typeCount >= 1 else { throw TZifError(reason: "no local time types") }
        var times: [Int64] = []
        for _ in 0..<header.timeCount { times.append(Int64(bitPattern: try reader.integer(8))) }
        var indexes: [Int] = []
        for _ in 0..<header.timeCount { indexes.append(Int(try reader.integer(1))) }
        var types: [Int32] = []
        for _ in 0..<header.typeCount {
            types.append(Int32(truncatingIfNeeded: Int64(bitPattern: try reader.integer(4))))
            try reader.skip(2)  // is-DST and designation index: buckets need the offset only
        }
        guard indexes.allSatisfy({ $0 < types.count }), zip(times, times.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw TZifError(reason: "transitions out of order or naming a missing type")
        }
        try reader.skip(header.charCount + header.isStandardCount + header.isUTCCount)
        transitions = times
        offsets = indexes.map { types[$0] }
        initialOffset = types[0]
        let footer = reader.rest
        if footer.count >= 2, footer.first == 0x0A, footer.last == 0x0A {
            let text = String(decoding: footer.dropFirst().dropLast(), as: UTF8.self)
            if !text.isEmpty {
                guard let parsed = PosixZoneRule(text) else { throw TZifError(reason: "footer rule '\(text)'") }
                rule = parsed
                if transitions.isEmpty { initialOffset = parsed.standardOffset }
            }
        }
    }

    struct Header {
        var version: Int, isUTCCount: Int, isStandardCount: Int, leapCount: Int, timeCount: Int, typeCount: Int
        var charCount: Int

        func blockSize(timeBytes: Int) -> Int {
            timeCount * (timeBytes + 1) + typeCount * 6 + charCount + leapCount * (timeBytes + 4)
                + isStandardCount + isUTCCount
        }
    }

    struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func integer(_ size: Int) throws(TZifError) -> UInt64 {
            guard offset + size <= bytes.count else { throw TZifError(reason: "cut short") }
            var value: UInt64 = 0
            for byte in bytes[offset..<(offset + size)] { value = value << 8 | UInt64(byte) }
            offset += size
            return size == 4 ? UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: value))) : value
        }

        mutating func skip(_ count: Int) throws(TZifError) {
            guard count >= 0, offset + count <= bytes.count else { throw TZifError(reason: "cut short") }
            offset += count
        }

        mutating func header() throws(TZifError) -> Header {
            guard offset + 44 <= bytes.count, Array(bytes[offset..<(offset + 4)]) == [0x54, 0x5A, 0x69, 0x66] else {
                throw TZifError(reason: "no TZif header")
            }
            let versionByte = bytes[offset + 4]
            offset += 20
            var counts: [Int] = []
            for _ in 0..<6 {
                let value = Int64(bitPattern: try integer(4))
                guard value >= 0, value < 1 << 20 else { throw TZifError(reason: "implausible counts") }
                counts.append(Int(value))
            }
            return Header(
                version: versionByte == 0 ? 1 : Int(versionByte) - 0x30, isUTCCount: counts[0],
                isStandardCount: counts[1], leapCount: counts[2], timeCount: counts[3], typeCount: counts[4],
                charCount: counts[5])
        }

        var rest: ArraySlice<UInt8> { bytes[offset...] }
    }
}

/// A POSIX TZ rule as TZif footers hold it (`CET-1CEST,M3.5.0,M10.5.0/3`; RFC 8536 §3.3, with the
/// version-3 extension of hours from -167 to 167): a standard offset, and optionally a daylight offset
/// with the dates and local times it starts and ends each year.
struct PosixZoneRule: Sendable, Hashable {
    /// Seconds east of UTC.
    var standardOffset: Int32
    var daylight: Daylight?

    struct Daylight: Sendable, Hashable {
        var offset: Int32
        var start: Change
        var end: Change
    }

    /// When in a year the offset changes: a day rule and the local time (seconds) on that day.
    struct Change: Sendable, Hashable {
        enum Day: Sendable, Hashable {
            /// `Jn`: day 1 to 365, February 29 never counted.
            case julian(Int64)
            /// `n`: day 0 to 365, February 29 counted.
            case zeroBased(Int64)
            /// `Mm.w.d`: weekday `d` (0 Sunday) of week `w` (5: the last) of month `m`.
            case monthWeekDay(month: Int64, week: Int64, weekday: Int64)
        }
        var day: Day
        var time: Int64 = 7200

        /// The local seconds (from 1970-01-01 local) of this change in `year`.
        func local(inYear year: Int64) -> Int64 {
            let days: Int64
            switch day {
            case .julian(let n):
                days = daysFromCivil(year: year, month: 1, day: 1) + n - 1 + (isLeap(year) && n >= 60 ? 1 : 0)
            case .zeroBased(let n):
                days = daysFromCivil(year: year, month: 1, day: 1) + n
            case .monthWeekDay(let month, let week, let weekday):
                let first = daysFromCivil(year: year, month: month, day: 1)
                let firstWeekday = divmodFloor(first + 4, 7).1  // 1970-01-01 was a Thursday
                var day = first + divmodFloor(weekday - firstWeekday, 7).1 + 7 * (week - 1)
                while day >= first + daysIn(month: month, year: year) { day -= 7 }
                days = day
            }
            return days * 86_400 + time
        }
    }

    /// The offset at UTC second `t`.
    func offset(atSecond t: Int64) -> Int32? {
        guard let daylight else { return standardOffset }
        let year = civil(fromDays: divmodFloor(t + Int64(standardOffset), 86_400).0).0
        let start = daylight.start.local(inYear: year) - Int64(standardOffset)
        let end = daylight.end.local(inYear: year) - Int64(daylight.offset)
        let inDaylight = start < end ? (t >= start && t < end) : (t >= start || t < end)
        return inDaylight ? daylight.offset : standardOffset
    }

    /// The UTC seconds of the rule's changes in `(from, to)`.
    func changes(from: Int64, to: Int64) -> [Int64] {
        guard let daylight, to > from else { return [] }
        let first = civil(fromDays: divmodFloor(from, 86_400).0).0 - 1
        let last = civil(fromDays: divmodFloor(to, 86_400).0).0 + 1
        guard last - first < 20_000 else { return [] }
        var found: [Int64] = []
        for year in first...last {
            found.append(daylight.start.local(inYear: year) - Int64(standardOffset))
            found.append(daylight.end.local(inYear: year) - Int64(daylight.offset))
        }
        return found.filter { $0 > from && $0 < to }.sorted()
    }

    /// Parses a rule; nil when it is not one.
    init?(_ text: String) {
        var scanner = RuleScanner(bytes: Array(text.utf8))
        guard scanner.skipName(), let standard = scanner.time(allowSign: true) else { return nil }
        standardOffset = Int32(-standard)
        if scanner.atEnd {
            daylight = nil
            return
        }
        guard scanner.skipName() else { return nil }
        var offset = standard - 3600
        if let explicit = scanner.time(allowSign: true) { offset = explicit }
        guard scanner.take(0x2C), let start = scanner.change(), scanner.take(0x2C), let end = scanner.change(),
            scanner.atEnd
        else { return nil }
        daylight = Daylight(offset: Int32(-offset), start: start, end: end)
    }
}

/// Reads the parts of a POSIX TZ rule.
struct RuleScanner {
    let bytes: [UInt8]
    var at = 0

    var atEnd: Bool { at == bytes.count }

    mutating func take(_ byte: UInt8) -> Bool {
        guard at < bytes.count, bytes[at] == byte else { return false }
        at += 1
        return true
    }

    /// A zone abbreviation: three or more letters, or `<...>`.
    mutating func skipName() -> Bool {
        if take(0x3C) {
            while at < bytes.count, bytes[at] != 0x3E { at += 1 }
            return take(0x3E)
        }
        let start = at
        while at < bytes.count, (0x41...0x5A).contains(bytes[at]) || (0x61...0x7A).contains(bytes[at]) { at += 1 }
        return at - start >= 3
    }

    mutating func number() -> Int64? {
        let start = at
        var value: Int64 = 0
        while at < bytes.count, (0x30...0x39).contains(bytes[at]), at - start < 4 {
            value = value * 10 + Int64(bytes[at] - 0x30)
            at += 1
        }
        return at > start ? value : nil
    }

    /// `[+-]hh[:mm[:ss]]` in seconds (hours up to 167).
    mutating func time(allowSign: Bool) -> Int64? {
        var sign: Int64 = 1
        if take(0x2D) { sign = -1 } else { _ = take(0x2B) }
        guard let hours = number(), hours <= 167 else { return nil }
        var seconds = hours * 3600
        if take(0x3A) {
            guard let minutes = number(), minutes < 60 else { return nil }
            seconds += minutes * 60
            if take(0x3A) {
                guard let secs = number(), secs < 60 else { return nil }
                seconds += secs
            }
        }
        return sign * seconds
    }

    /// `Jn`, `n` or `Mm.w.d`, then `[/time]`.
    mutating func change() -> PosixZoneRule.Change? {
        var change: PosixZoneRule.Change
        if take(0x4D) {
            guard let month = number(), (1...12).contains(month), take(0x2E), let week = number(),
                (1...5).contains(week), take(0x2E), let weekday = number(), weekday <= 6
            else { return nil }
            change = .init(day: .monthWeekDay(month: month, week: week, weekday: weekday))
        } else if take(0x4A) {
            guard let n = number(), (1...365).contains(n) else { return nil }
            change = .init(day: .julian(n))
        } else {
            guard let n = number(), n <= 365 else { return nil }
            change = .init(day: .zeroBased(n))
        }
        if take(0x2F) {
            guard let time = time(allowSign: true) else { return nil }
            change.time = time
        }
        return change
    }
}
