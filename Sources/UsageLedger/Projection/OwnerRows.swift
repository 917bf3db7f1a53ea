import LMDBStorage
import LedgerCore

/// One owner's usage in one hour: the sum of that owner's `hourly` rows, kept in `owner_hourly` so that an
/// owner's usage over a month reads 720 entries however many resources the owner has.
///
/// Besides the sums it keeps how many rows it sums, and per meter how many of those rows carry it: a
/// meter that occurred with 0 stays distinct from one that never occurred, and an entry whose rows are all
/// gone is deleted instead of left at zero. Counts are signed so that one value can also be a change.
struct OwnerRow: Equatable {
    var rows: Int64 = 0
    var running: Int128 = 0
    var meters: [String: Entry] = [:]
    var adjustments: [String: Entry] = [:]

    struct Entry: Equatable {
        var count: Int64
        var sum: Int128
    }

    static let version: UInt8 = 2

    /// One steady hour of a resource with `footprint` (`sign` -1: its removal): one row's worth, derived
    /// from the span.
    static func steadyHour(_ footprint: Meters, sign: Int64 = 1) throws(LedgerError) -> OwnerRow {
        var row = OwnerRow()
        try row.add(try SteadySpan.hourAmounts(footprint), sign: sign)
        return row
    }

    /// Adds (`sign` 1) or removes (`sign` -1) one `hourly` row.
    mutating func add(_ row: UsageAmounts, sign: Int64) throws(LedgerError) {
        rows = try Self.count(rows, plus: sign)
        running = try checkedAdd(
            running, try Self.signed(row.runningMicroseconds, sign, "running_seconds"), "running_seconds")
        for (name, value) in row.meterMicroseconds {
            try Self.add(value, sign: sign, to: &meters, name: name, field: "\(name)_seconds")
        }
        for (name, value) in row.adjustments {
            try Self.add(value, sign: sign, to: &adjustments, name: name, field: name)
        }
    }

    /// Adds a change made of other rows' additions and removals.
    mutating func add(_ change: OwnerRow) throws(LedgerError) {
        rows = try Self.count(rows, plus: change.rows)
        running = try checkedAdd(running, change.running, "running_seconds")
        for (name, entry) in change.meters { try Self.add(entry, to: &meters, name: name, field: "\(name)_seconds") }
        for (name, entry) in change.adjustments { try Self.add(entry, to: &adjustments, name: name, field: name) }
    }

    private static func add(
        _ value: Int128, sign: Int64, to entries: inout [String: Entry], name: String,
        field: @autoclosure () -> String
    ) throws(LedgerError) {
        try add(Entry(count: sign, sum: try signed(value, sign, field())), to: &entries, name: name, field: field())
    }

    /// A row count plus a change; only damaged counts can overflow.
    private static func count(_ count: Int64, plus change: Int64) throws(LedgerError) -> Int64 {
        let (sum, overflow) = count.addingReportingOverflow(change)
        guard !overflow else { throw LedgerError.corrupt(reason: "an owner_hourly row count overflows") }
        return sum
    }

    /// `value` or its negation; a damaged row could hold the one value whose negation overflows.
    private static func signed(_ value: Int128, _ sign: Int64, _ field: @autoclosure () -> String) throws(LedgerError)
        -> Int128
    {
        guard sign < 0 else { return value }
        let (negated, overflow) = Int128(0).subtractingReportingOverflow(value)
        guard !overflow else { throw LedgerError.overflow(field: field(), reason: "the sum exceeds 128 bits") }
        return negated
    }

    private static func add(
        _ change: Entry, to entries: inout [String: Entry], name: String,
        field: @autoclosure () -> String
    ) throws(LedgerError) {
        var entry = entries[name] ?? Entry(count: 0, sum: 0)
        entry.count = try count(entry.count, plus: change.count)
        entry.sum = try checkedAdd(entry.sum, change.sum, field())
        entries[name] = entry.count == 0 && entry.sum == 0 ? nil : entry
    }

    /// The usage it holds, as a query returns it: the meters that some row carries.
    var amounts: UsageAmounts {
        var amounts = UsageAmounts()
        amounts.runningMicroseconds = running
        for (name, entry) in meters where entry.count > 0 { amounts.meterMicroseconds[name] = entry.sum }
        for (name, entry) in adjustments where entry.count > 0 { amounts.adjustments[name] = entry.sum }
        return amounts
    }

    /// Whether it is a consistent stored value: positive row count, and every meter carried by at least one
    /// row and at most all of them.
    var isWellFormed: Bool {
        rows > 0 && (meters.values.allSatisfy { $0.count > 0 && $0.count <= rows })
            && adjustments.values.allSatisfy { $0.count > 0 && $0.count <= rows }
    }

    // MARK: Encoding

    /// `owner_hourly` key: hour start (8, ordered), then the owner's UTF-8 (which holds no NUL).
    static func key(hour: Int64, owner: String) -> [UInt8] { key(hourBytes: hour, ownerBytes: Array(owner.utf8)) }

    /// `owner_hourly` key of an owner given as its UTF-8 bytes.
    static func key(hourBytes hour: Int64, ownerBytes owner: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: 8 + owner.count)
        writer.writeOrdered(hour)
        writer.write(contentsOf: owner)
        return writer.bytes
    }

    /// The `owner_hourly` key of the owner whose `hourly` key this is: its hour and owner, without the rest.
    static func key(ofHourlyKey key: UnsafeRawBufferPointer) throws(LedgerError) -> [UInt8] {
        guard key.count > 8, let end = key[8...].firstIndex(of: 0) else {
            throw .corrupt(reason: "an hourly key does not hold an owner")
        }
        return Array(key[..<end])
    }

    /// `OWNER hour HOUR` for messages, from an `owner_hourly` key.
    static func describe(key: some Collection<UInt8>) -> String {
        let bytes = Array(key)
        let decoded = bytes.withUnsafeBytes { try? OwnerHourKeyCodec.decode($0) }
        guard let decoded else { return "(a key of \(bytes.count) bytes)" }
        return "\(decoded.owner) hour \(Timestamp(microseconds: decoded.hour))"
    }

    /// `u8 version = 2, varint rows, compact128 running, meters, adjustments`, each set as `varint n,
    /// n × (str name, varint count, compact128 sum)`, names sorted.
    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 48)
        writer.write(Self.version)
        writer.writeVarint(UInt64(max(0, rows)))
        RecordFields.writeCompact128(running, into: &writer)
        for entries in [meters, adjustments] {
            writer.writeVarint(UInt64(entries.count))
            for name in entries.keys.sorted() {
                guard let entry = entries[name] else { continue }
                writer.writeString(name)
                writer.writeVarint(UInt64(max(0, entry.count)))
                RecordFields.writeCompact128(entry.sum, into: &writer)
            }
        }
        return writer.bytes
    }

    init() {}

    /// Decodes version 2, or version 1 (format 4: sums as 16-byte big-endian integers) during an upgrade.
    init(decoding bytes: UnsafeRawBufferPointer) throws(LedgerError) {
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            let version = try reader.readByte()
            guard version == Self.version || version == 1 else {
                throw ByteReader.Malformed(offset: 0, expected: "owner row version \(Self.version)")
            }
            func sum(_ reader: inout ByteReader) throws(ByteReader.Malformed) -> Int128 {
                version == 1 ? try RecordFields.readSigned128(&reader) : try RecordFields.readCompact128(&reader)
            }
            rows = Int64(clamping: try reader.readVarint())
            running = try sum(&reader)
            for set in 0..<2 {
                let count = try reader.readVarint()
                guard count <= UInt64(reader.remaining) else {
                    throw ByteReader.Malformed(offset: reader.offset, expected: "meters")
                }
                var entries: [String: Entry] = [:]
                for _ in 0..<count {
                    let name = try reader.readString()
                    let carried = Int64(clamping: try reader.readVarint())
                    entries[name] = Entry(count: carried, sum: try sum(&reader))
                }
                if set == 0 { meters = entries } else { adjustments = entries }
            }
            guard reader.remaining == 0 else {
                throw ByteReader.Malformed(offset: reader.offset, expected: "the end of the owner row")
            }
        } catch {
            throw .corrupt(
                reason: "an owner_hourly entry is malformed: expected \(error.expected) at byte \(error.offset)")
        }
        guard isWellFormed else { throw .corrupt(reason: "an owner_hourly entry has counts that no set of rows gives") }
    }
}

/// Changes to `owner_hourly` gathered in one write transaction and applied once per entry at its end: a
/// rollup writes thousands of rows and spans of the same few owners and hours.
struct OwnerRowChanges {
    private var changes: [ByteKey: OwnerRow] = [:]
    /// Per owner (its UTF-8), changes of the steady rate by hour: a span adds its hour's row at its start
    /// and removes it at its end, so a month-long span costs two entries here, not 720.
    private var rateChanges: [ByteKey: [Int64: OwnerRow]] = [:]
    /// Per footprint, one steady hour's sum (spans repeat a few footprints).
    private var steadyHours: [Meters: OwnerRow] = [:]

    /// Records that the `hourly` row of `owner` in `hour` went from `old` to `new` (nil: absent).
    mutating func record(hour: Int64, owner: String, from old: UsageAmounts?, to new: UsageAmounts?) throws(LedgerError)
    {
        guard old != new else { return }
        let key = ByteKey(OwnerRow.key(hour: hour, owner: owner))
        var change = changes[key] ?? OwnerRow()
        if let old { try change.add(old, sign: -1) }
        if let new { try change.add(new, sign: 1) }
        changes[key] = change
    }

    /// Records that a span's hours were added (`sign` 1) or removed (`sign` -1) for a resource of `owner`.
    mutating func record(span: SteadySpan, owner: String, sign: Int64) throws(LedgerError) {
        guard span.start < span.end else { return }
        let steady: OwnerRow
        if let known = steadyHours[span.footprint] {
            steady = known
        } else {
            steady = try OwnerRow.steadyHour(span.footprint)
            steadyHours[span.footprint] = steady
        }
        var rate = OwnerRow(), stop = OwnerRow()
        try rate.add(steady, times: sign)
        try stop.add(steady, times: -sign)
        let ownerKey = ByteKey(Array(owner.utf8))
        try rateChanges[ownerKey, default: [:]][span.start, default: OwnerRow()].add(rate)
        try rateChanges[ownerKey, default: [:]][span.end, default: OwnerRow()].add(stop)
    }

    /// Turns the rate changes into changes of each owner-hour they cover.
    private func allChanges() throws(LedgerError) -> [ByteKey: OwnerRow] {
        var all = changes
        for (owner, points) in rateChanges {
            let hours = points.keys.sorted()
            guard var hour = hours.first, let last = hours.last else { continue }
            var rate = OwnerRow()
            let name = String(decoding: owner.bytes, as: UTF8.self)
            while hour < last {
                if let change = points[hour] { try rate.add(change) }
                if rate != OwnerRow() {
                    try all[ByteKey(OwnerRow.key(hour: hour, owner: name)), default: OwnerRow()].add(rate)
                }
                hour += Timestamp.microsecondsPerHour
            }
        }
        return all
    }

    /// Applies the changes to the stored entries, in key order: B-tree pages then fill in order, and the
    /// file's layout does not depend on a dictionary's per-process order.
    /// (Keys stay bytes here: they are built once per change and compared as the B-tree compares them.)
    func apply(to txn: borrowing WriteTransaction, table: Table<OwnerHourKeyCodec, OwnerRowCodec>) throws {
        for (key, change) in try allChanges().sorted(by: { $0.key.bytes.lexicographicallyPrecedes($1.key.bytes) }) {
            if change == OwnerRow() { continue }
            let encoded = EncodedKey<OwnerHourKeyCodec>(encodedBytes: key.bytes)
            var row = try txn.get(table, encoded: encoded) ?? OwnerRow()
            try row.add(change)
            if row.rows == 0 {
                try txn.delete(table, encoded: encoded)
            } else {
                guard row.isWellFormed else {
                    throw LedgerError.corrupt(
                        reason: "owner_hourly does not match the hourly rows it sums (run 'usage-ledger verify')")
                }
                try txn.put(table, encoded: encoded, row)
            }
        }
    }
}

extension OwnerRow {
    /// Adds `other` `times` times (1 or -1 in use).
    mutating func add(_ other: OwnerRow, times: Int64) throws(LedgerError) {
        guard times != 0 else { return }
        if times > 0 {
            for _ in 0..<times { try add(other) }
            return
        }
        // A removal: subtract each part, checked (a damaged sum could be the one value without a negation).
        var removal = OwnerRow()
        removal.rows = 0 - other.rows
        removal.running = try Self.negate(other.running)
        for (name, entry) in other.meters {
            removal.meters[name] = Entry(count: 0 - entry.count, sum: try Self.negate(entry.sum))
        }
        for (name, entry) in other.adjustments {
            removal.adjustments[name] = Entry(count: 0 - entry.count, sum: try Self.negate(entry.sum))
        }
        for _ in 0..<(0 - times) { try add(removal) }
    }

    private static func negate(_ value: Int128) throws(LedgerError) -> Int128 {
        let (negated, overflow) = Int128(0).subtractingReportingOverflow(value)
        guard !overflow else {
            throw LedgerError.overflow(field: "running_seconds", reason: "the sum exceeds 128 bits")
        }
        return negated
    }
}

/// Every owner-hour's sum of the stored rows and spans, in `owner_hourly` key order (hour, then owner):
/// rows are read in key order, spans become rate changes swept hour by hour, so memory holds the spans'
/// start and end points and one hour's owners, never every owner-hour.
struct StoredOwnerRows {
    private var points: [(hour: Int64, owner: Int32, rate: Int32, sign: Int8)] = []
    private var owners: [[UInt8]] = []
    private var rates: [OwnerRow] = []
    private let from: Int64

    /// Reads every span of `steady` (clipped to hours at or after `from`).
    init(from: Int64, ledger: Ledger, in txn: borrowing some ReadableTransaction & ~Copyable) throws {
        self.from = from
        var ownerNumbers: [ByteKey: Int32] = [:]
        var rateNumbers: [Meters: Int32] = [:]
        let cursor = try txn.cursor(ledger.schema.steady)
        var entry = try cursor.rawFirst()
        while let current = entry {
            let key = try cursor.key(of: current)
            let value = try cursor.value(of: current)
            let span = SteadySpan(
                start: key.start, end: key.start + value.hours * Timestamp.microsecondsPerHour,
                footprint: value.footprint)
            entry = try cursor.rawNext()
            guard let clipped = span.clipped(from: from, until: Int64.max) else { continue }
            let ownerBytes = ByteKey(Array(key.owner.utf8))
            let owner = ownerNumbers[ownerBytes] ?? Int32(owners.count)
            if owner == Int32(owners.count) {
                owners.append(ownerBytes.bytes)
                ownerNumbers[ownerBytes] = owner
            }
            let rate = rateNumbers[span.footprint] ?? Int32(rates.count)
            if rate == Int32(rates.count) {
                rates.append(try OwnerRow.steadyHour(span.footprint))
                rateNumbers[span.footprint] = rate
            }
            points.append((clipped.start, owner, rate, 1))
            points.append((clipped.end, owner, rate, -1))
        }
        points.sort { $0.hour < $1.hour }
    }

    /// Calls `visit` with every owner-hour's key and sum, in key order.
    func forEach(
        ledger: Ledger, in txn: borrowing some ReadableTransaction & ~Copyable,
        _ visit: ([UInt8], OwnerRow) throws -> Void
    ) throws {
        var start = ByteWriter(capacity: 8)
        start.writeOrdered(from)
        let rows = try txn.cursor(ledger.schema.hourly)
        var row = try rows.rawSeek(atLeastBytes: start.bytes)
        var steady: [Int32: OwnerRow] = [:]
        var next = 0
        var hour = Int64.min
        while true {
            // The next hour with something in it: a row, a rate change, or any hour while spans run.
            let rowHour = try row.map { current throws(LedgerError) -> Int64 in
                guard let hour = ProjectionFormat.hour(ofHourlyKey: current.key) else {
                    throw .corrupt(reason: "an hourly key is too short")
                }
                return hour
            }
            var candidates = [rowHour, next < points.count ? points[next].hour : nil].compactMap { $0 }
            if !steady.isEmpty { candidates.append(hour + Timestamp.microsecondsPerHour) }
            guard let nextHour = candidates.min() else { return }
            hour = nextHour
            while next < points.count, points[next].hour <= hour {
                let point = points[next]
                try steady[point.owner, default: OwnerRow()].add(rates[Int(point.rate)], times: Int64(point.sign))
                if steady[point.owner] == OwnerRow() { steady[point.owner] = nil }
                next += 1
            }
            var sums: [ByteKey: OwnerRow] = [:]
            for (owner, rate) in steady {
                sums[ByteKey(OwnerRow.key(hourBytes: hour, ownerBytes: owners[Int(owner)]))] = rate
            }
            while let current = row, ProjectionFormat.hour(ofHourlyKey: current.key) == hour {
                let key = try OwnerRow.key(ofHourlyKey: current.key)
                try sums[ByteKey(key), default: OwnerRow()].add(try ProjectionFormat.decodeRow(current.value), sign: 1)
                row = try rows.rawNext()
            }
            for (key, sum) in sums.sorted(by: { $0.key.bytes.lexicographicallyPrecedes($1.key.bytes) }) {
                try visit(key.bytes, sum)
            }
        }
    }
}

extension Ledger {
    /// Rewrites `owner_hourly` from the stored `hourly` rows and `steady` spans at or after `from` (rebuild,
    /// and with it upgrades).
    func rewriteOwnerRows(from: Timestamp, in txn: borrowing WriteTransaction) throws {
        var start = ByteWriter(capacity: 8)
        start.writeOrdered(from.microseconds)
        let stale = try txn.writeCursor(schema.ownerHourly)
        while try stale.reading.rawSeek(atLeastBytes: start.bytes) != nil { try stale.deleteCurrent() }
        let stored = try StoredOwnerRows(from: from.microseconds, ledger: self, in: txn)
        try stored.forEach(ledger: self, in: txn) { key, row in
            try txn.put(schema.ownerHourly, encoded: EncodedKey(encodedBytes: key), row)
        }
    }
}
