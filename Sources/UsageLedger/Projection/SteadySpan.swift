import LMDBStorage
import LedgerCore

/// Whole hours in which a resource ran with one footprint and had no event: `[start, end)`, hour-aligned.
///
/// Such an hour costs no `hourly` row: its row would be an hour of running and `value × 3,600,000,000` per
/// footprint meter (a meter of 0 included), derived exactly from the span. Hours with an event keep rows.
struct SteadySpan: Sendable, Equatable {
    /// The first hour (start, µs).
    var start: Int64
    /// The hour after the last one (start, µs).
    var end: Int64
    /// The footprint of every hour of the span.
    var footprint: Meters

    static let version: UInt8 = 1

    /// How many hours the span covers.
    var hours: Int64 { (end - start) / Timestamp.microsecondsPerHour }

    /// The usage of one of its hours: what an `hourly` row of that hour would hold.
    static func hourAmounts(_ footprint: Meters) throws(LedgerError) -> UsageAmounts {
        var amounts = UsageAmounts()
        try amounts.addRunning(footprint: footprint, duration: Timestamp.microsecondsPerHour)
        return amounts
    }

    /// A stored span's first hour, hours and footprint bytes, read without decoding the meters (equal
    /// footprints have equal bytes: meters are encoded in name order).
    static func parse(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws(LedgerError) -> (
        start: Int64, hours: Int64, footprint: UnsafeRawBufferPointer
    ) {
        var keyReader = ByteReader(UnsafeRawBufferPointer(rebasing: key[max(0, key.count - 8)...]))
        var reader = ByteReader(value)
        do throws(ByteReader.Malformed) {
            let start = try keyReader.readOrderedInt64()
            guard isFirstHour(start) else {
                throw ByteReader.Malformed(offset: key.count - 8, expected: "an hour's start from year 0000 to 9999")
            }
            let hours = try readHours(&reader)
            return (start, hours, UnsafeRawBufferPointer(rebasing: value[reader.offset...]))
        } catch {
            throw .corrupt(reason: "a steady span is malformed: expected \(error.expected) at byte \(error.offset)")
        }
    }

    /// Reads a span value's version and hours, leaving `reader` at the footprint. A span longer than
    /// 10,000 years is damage; refusing it keeps `hours × 1h` in range.
    static func readHours(_ reader: inout ByteReader) throws(ByteReader.Malformed) -> Int64 {
        guard try reader.readByte() == version else {
            throw ByteReader.Malformed(offset: 0, expected: "span version \(version)")
        }
        let hours = try reader.readVarint()
        guard (1...87_600_000).contains(hours) else {
            throw ByteReader.Malformed(offset: 1, expected: "1 to 87,600,000 hours")
        }
        return Int64(hours)
    }

    /// Whether `start` can begin a span: a whole hour within the instants the ledger records. Checked on
    /// every read, so that `start + hours` cannot overflow and a damaged key cannot send a sweep across
    /// millennia (no single flipped bit keeps an hour's start whole: 3.6e9 is not a power of two).
    static func isFirstHour(_ start: Int64) -> Bool {
        (Timestamp.earliest.microseconds...Timestamp.latest.microseconds).contains(start)
            && start % Timestamp.microsecondsPerHour == 0
    }

    /// The footprint as a stored span holds it.
    static func encodedFootprint(_ footprint: Meters) -> [UInt8] {
        var writer = ByteWriter(capacity: 24)
        RecordFields.writeMeters(footprint, into: &writer)
        return writer.bytes
    }

    /// The span clipped to `[from, until)`, or nil when nothing of it lies there.
    func clipped(from: Int64, until: Int64) -> SteadySpan? {
        let clipped = SteadySpan(start: max(start, from), end: min(end, until), footprint: footprint)
        return clipped.start < clipped.end ? clipped : nil
    }
}

/// A `steady` key's parts: the resource (under its owner) and the span's first hour.
struct SteadySpanKey: Sendable, Hashable {
    var owner: String
    var resource: ResourceID
    var start: Int64
}

/// `steady` key: owner, NUL, type, NUL, id, NUL, first hour (8, ordered). One resource's spans are one
/// range in time order; one owner's spans are one range.
enum SteadySpanKeyCodec: ByteArrayCodec {
    static func encode(_ key: SteadySpanKey) -> [UInt8] {
        var writer = ByteWriter(
            capacity: 12 + key.owner.utf8.count + key.resource.type.utf8.count
                + key.resource.id.utf8.count)
        writer.write(contentsOf: prefix(owner: key.owner, resource: key.resource))
        writer.writeOrdered(key.start)
        return writer.bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> SteadySpanKey {
        guard bytes.count > 8 else { throw .malformedRecord(table: "", reason: "a steady key is too short") }
        let parts = bytes[..<(bytes.count - 9)].split(separator: 0, omittingEmptySubsequences: false)
        guard parts.count == 3, bytes[bytes.count - 9] == 0 else {
            throw .malformedRecord(table: "", reason: "a steady key does not hold owner, type, id and hour")
        }
        var reader = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[(bytes.count - 8)...]))
        do throws(ByteReader.Malformed) {
            let start = try reader.readOrderedInt64()
            guard SteadySpan.isFirstHour(start) else {
                throw ByteReader.Malformed(offset: bytes.count - 8, expected: "an hour's start")
            }
            return SteadySpanKey(
                owner: String(decoding: parts[0], as: UTF8.self),
                resource: ResourceID(
                    type: String(decoding: parts[1], as: UTF8.self), id: String(decoding: parts[2], as: UTF8.self)),
                start: start)
        } catch {
            throw .malformedRecord(table: "", reason: "a steady key is malformed")
        }
    }

    /// The prefix of one resource's spans: owner, NUL, type, NUL, id, NUL.
    static func prefix(owner: String, resource: ResourceID) -> [UInt8] {
        ProjectionFormat.ownerKey(owner, type: resource.type, id: resource.id) + [0]
    }
}

/// A `steady` value: `u8 version = 1, varint hours, meters` (the footprint, as events store it).
enum SteadySpanValueCodec: ByteArrayCodec {
    static func encode(_ value: (hours: Int64, footprint: Meters)) -> [UInt8] {
        var writer = ByteWriter(capacity: 16)
        writer.write(SteadySpan.version)
        writer.writeVarint(UInt64(max(0, value.hours)))
        RecordFields.writeMeters(value.footprint, into: &writer)
        return writer.bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> (hours: Int64, footprint: Meters) {
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            let hours = try SteadySpan.readHours(&reader)
            let footprint = try RecordFields.readMeters(&reader)
            guard reader.remaining == 0 else {
                throw ByteReader.Malformed(offset: reader.offset, expected: "the end of the span")
            }
            return (hours, footprint)
        } catch {
            throw .malformedRecord(
                table: "", reason: "a steady span is malformed: expected \(error.expected) at byte \(error.offset)")
        }
    }
}

/// What a stretch of a resource's fold materializes to: rows for the hours with an event, spans for the
/// steady hours between them.
struct Materialization {
    var rows: [Int64: UsageAmounts] = [:]
    var spans: [SteadySpan] = []

    /// Splits `fold` over `[from, until)` (both hour-aligned). `eventHours` are the hours (start, µs) in
    /// which the timeline has an event: only they get rows.
    init(_ fold: FoldResult, eventHours: Set<Int64>, from: Timestamp, until: Timestamp) throws(LedgerError) {
        let hour = Timestamp.microsecondsPerHour
        let sortedEventHours = eventHours.sorted()
        for segment in fold.segments {
            let start = max(segment.start.microseconds, from.microseconds)
            let end = min(segment.end?.microseconds ?? Int64.max, until.microseconds)
            guard start < end else { continue }
            var current = Timestamp(microseconds: start).hourFloor.microseconds
            var steadyFrom: Int64?
            while current < end {
                let next = current + hour
                let whole = start <= current && next <= end
                if whole && !eventHours.contains(current) {
                    if steadyFrom == nil { steadyFrom = current }
                } else {
                    if let first = steadyFrom {
                        spans.append(SteadySpan(start: first, end: current, footprint: segment.footprint))
                        steadyFrom = nil
                    }
                    let duration = min(end, next) - max(start, current)
                    try rows[current, default: UsageAmounts()].addRunning(
                        footprint: segment.footprint, duration: duration)
                }
                // Inside a long steady stretch, jump to the next event hour instead of walking every hour.
                if whole, steadyFrom != nil {
                    current = Self.nextStop(after: current, before: end, eventHours: sortedEventHours)
                } else {
                    current = next
                }
            }
            if let first = steadyFrom {
                spans.append(SteadySpan(start: first, end: min(current, end), footprint: segment.footprint))
            }
        }
        for (at, deltas) in fold.adjustments where at >= from && at < until {
            try rows[at.hourFloor.microseconds, default: UsageAmounts()].addAdjustment(deltas)
        }
        spans.sort { $0.start < $1.start }
    }

    /// The start of the next hour after `current` that is not a whole steady hour before `end`: the next
    /// event hour, or the hour holding `end`.
    private static func nextStop(after current: Int64, before end: Int64, eventHours: [Int64]) -> Int64 {
        let hour = Timestamp.microsecondsPerHour
        let lastWhole = end - ((end % hour) + hour) % hour  // the hour holding `end` (or `end` on a boundary)
        var low = 0, high = eventHours.count
        while low < high {
            let middle = (low + high) / 2
            if eventHours[middle] <= current { low = middle + 1 } else { high = middle }
        }
        let stop = low < eventHours.count ? min(eventHours[low], lastWhole) : lastWhole
        return max(current + hour, stop)
    }
}

extension FoldResult {
    /// The hours (start, µs) holding an event of `entries` in `[from, until)`.
    static func eventHours(_ entries: [TimelineEntry], from: Timestamp, until: Timestamp) -> Set<Int64> {
        var hours = Set<Int64>()
        for entry in entries where entry.occurredAt >= from && entry.occurredAt < until {
            hours.insert(entry.occurredAt.hourFloor.microseconds)
        }
        return hours
    }
}
