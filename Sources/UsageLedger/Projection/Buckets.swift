import LedgerCore

/// The periods a usage answer is split into, as UTC instants (µs): the whole range, periods of one length
/// at a fixed offset (UTC hours and days, days in a zone whose offset does not change in the range, hours
/// in a fixed zone), or listed starts (months, and days or hours across a change of offset).
struct UsageBuckets: Sendable {
    private enum Kind {
        case total(Int64)
        case fixed(length: Int64, offset: Int64)
        case listed([Int64])
    }

    private let kind: Kind
    /// The end of the range: the last period ends here.
    let end: Int64

    /// More periods than this in one answer are refused (a zone's hours over centuries).
    static let maximumListed = 5_000_000

    private static let hour = Timestamp.microsecondsPerHour, day: Int64 = 86_400_000_000

    init(from: Timestamp, end: Timestamp, granularity: UsageGranularity, zone: UsageTimeZone) throws(LedgerError) {
        self.end = end.microseconds
        let (fromSecond, endSecond) = (divmodFloor(from.microseconds, 1_000_000).0, end.microseconds / 1_000_000 + 1)
        let changes = zone.changes(from: fromSecond - 86_400, to: endSecond + 86_400)
        let offset = Int64(zone.offset(atSecond: fromSecond)) * 1_000_000
        switch granularity {
        case .total:
            kind = .total(from.microseconds)
        case .hour:
            let offsets = [zone.offset(atSecond: fromSecond)] + changes.map { zone.offset(atSecond: $0) }
            if offsets.allSatisfy({ $0 % 3600 == 0 }) {
                kind = .fixed(length: Self.hour, offset: 0)
            } else if changes.isEmpty {
                kind = .fixed(length: Self.hour, offset: offset)
            } else {
                kind = .listed(try Self.localStarts(from: from, end: end, zone: zone, step: .hour, changes: changes))
            }
        case .day:
            kind =
                changes.isEmpty
                ? .fixed(length: Self.day, offset: offset)
                : .listed(try Self.localStarts(from: from, end: end, zone: zone, step: .day, changes: []))
        case .month:
            kind = .listed(try Self.localStarts(from: from, end: end, zone: zone, step: .month, changes: []))
        }
        if case .fixed(let length, let offset) = kind, divmodFloor(offset, Self.hour).1 != 0,
            (end.microseconds - from.microseconds) / length > Int64(Self.maximumListed)
        {
            throw .invalidArgument(
                reason: "the range holds more than \(Self.maximumListed) periods: ask a shorter range or longer periods"
            )
        }
    }

    private enum Step { case hour, day, month }

    /// The instants at which local hours, days or months begin, from the one holding `from` to the last
    /// before `end` (with `changes` among them for hours: a change of offset begins a period too).
    private static func localStarts(
        from: Timestamp, end: Timestamp, zone: UsageTimeZone, step: Step, changes: [Int64]
    ) throws(LedgerError) -> [Int64] {
        let fromSecond = divmodFloor(from.microseconds, 1_000_000).0
        let endSecond = divmodFloor(end.microseconds - 1, 1_000_000).0 + 1
        var local = fromSecond + Int64(zone.offset(atSecond: fromSecond))
        // Back to the start of the local period holding `from`.
        switch step {
        case .hour: local -= divmodFloor(local, 3600).1
        case .day: local -= divmodFloor(local, 86_400).1
        case .month:
            let (year, month, _) = civil(fromDays: divmodFloor(local, 86_400).0)
            local = daysFromCivil(year: year, month: month, day: 1) * 86_400
        }
        var starts: [Int64] = []
        var last = Int64.min
        while true {
            let instant = zone.firstInstant(atOrAfterLocal: local)
            if instant >= endSecond && !starts.isEmpty { break }
            if instant > last {
                starts.append(instant)
                last = instant
            }
            guard starts.count <= maximumListed else {
                throw .invalidArgument(
                    reason: "the range holds more than \(maximumListed) periods: ask a shorter range or longer periods")
            }
            switch step {
            case .hour: local += 3600
            case .day: local += 86_400
            case .month:
                let (year, month, _) = civil(fromDays: divmodFloor(local, 86_400).0)
                local =
                    daysFromCivil(year: month == 12 ? year + 1 : year, month: month == 12 ? 1 : month + 1, day: 1)
                    * 86_400
            }
        }
        let all = Set(starts + changes.filter { $0 > starts[0] && $0 < endSecond })
        // The first period holds `from`: drop starts before the one at or before it.
        let sorted = all.sorted().map { $0 * 1_000_000 }
        let firstKept = sorted.lastIndex { $0 <= from.microseconds } ?? 0
        return Array(sorted[firstKept...])
    }

    /// The start of the period holding `instant` (µs).
    func start(containing instant: Int64) -> Int64 {
        switch kind {
        case .total(let from): return from
        case .fixed(let length, let offset): return instant - divmodFloor(instant + offset, length).1
        case .listed(let starts): return starts[starts.lastIndex(notAfter: instant) ?? 0]
        }
    }

    /// The end of the period that starts at `start`, no later than the range's end.
    func end(ofPeriodStarting start: Int64) -> Int64 {
        switch kind {
        case .total: return end
        case .fixed(let length, _): return min(start + length, end)
        case .listed(let starts):
            // A binary search: an answer by hour over a year asks this for each of thousands of rows.
            let next = (starts.lastIndex(notAfter: start) ?? -1) + 1
            return next < starts.count ? min(starts[next], end) : end
        }
    }

    /// Every period start in `[start(containing: from), end)`, ascending.
    func starts(from: Int64) -> [Int64] {
        switch kind {
        case .total(let start): return [start]
        case .fixed(let length, _):
            return Array(stride(from: start(containing: from), to: end, by: Int(length)).map { Int64($0) })
        case .listed(let starts): return starts.filter { $0 < end }
        }
    }

    /// The period starts strictly inside `(from, end)` that do not fall on a whole UTC hour: the hours
    /// holding them are split there, exactly, instead of being taken whole from the rows.
    func unalignedStarts(after from: Int64) -> [Int64] {
        switch kind {
        case .total: return []
        case .fixed(_, let offset):
            guard divmodFloor(offset, Self.hour).1 != 0 else { return [] }
            return starts(from: from).filter { $0 > from }
        case .listed(let starts):
            return starts.filter { $0 > from && $0 < end && divmodFloor($0, Self.hour).1 != 0 }
        }
    }
}
