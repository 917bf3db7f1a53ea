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

    static let version: UInt8 = 1

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
    static func key(hour: Int64, owner: String) -> [UInt8] {
        var writer = ByteWriter(capacity: 8 + owner.utf8.count)
        writer.writeOrdered(hour)
        writer.write(contentsOf: owner.utf8)
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

    /// `u8 version, varint rows, i128 running, meters, adjustments`, each set as `varint n, n × (str name,
    /// varint count, i128 sum)`, names sorted.
    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        writer.write(Self.version)
        writer.writeVarint(UInt64(max(0, rows)))
        RecordFields.writeSigned128(running, into: &writer)
        for entries in [meters, adjustments] {
            writer.writeVarint(UInt64(entries.count))
            for name in entries.keys.sorted() {
                guard let entry = entries[name] else { continue }
                writer.writeString(name)
                writer.writeVarint(UInt64(max(0, entry.count)))
                RecordFields.writeSigned128(entry.sum, into: &writer)
            }
        }
        return writer.bytes
    }

    init() {}

    init(decoding bytes: UnsafeRawBufferPointer) throws(LedgerError) {
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            guard try reader.readByte() == Self.version else {
                throw ByteReader.Malformed(offset: 0, expected: "owner row version \(Self.version)")
            }
            rows = Int64(clamping: try reader.readVarint())
            running = try RecordFields.readSigned128(&reader)
            for set in 0..<2 {
                let count = try reader.readVarint()
                guard count <= UInt64(reader.remaining) else {
                    throw ByteReader.Malformed(offset: reader.offset, expected: "meters")
                }
                var entries: [String: Entry] = [:]
                for _ in 0..<count {
                    let name = try reader.readString()
                    let carried = Int64(clamping: try reader.readVarint())
                    entries[name] = Entry(count: carried, sum: try RecordFields.readSigned128(&reader))
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
/// rollup writes thousands of rows of the same few owners and hours.
struct OwnerRowChanges {
    private var changes: [ByteKey: OwnerRow] = [:]

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

    /// Applies the changes to the stored entries, in key order: B-tree pages then fill in order, and the
    /// file's layout does not depend on a dictionary's per-process order.
    /// (Keys stay bytes here: they are built once per change and compared as the B-tree compares them.)
    func apply(to txn: borrowing WriteTransaction, table: Table<OwnerHourKeyCodec, OwnerRowCodec>) throws {
        for (key, change) in changes.sorted(by: { $0.key.bytes.lexicographicallyPrecedes($1.key.bytes) }) {
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

/// Sums `hourly` rows, fed in key order, into one `OwnerRow` per owner-hour (an owner's rows of one hour
/// are adjacent in `hourly`).
struct OwnerRowSums {
    private var current: (key: [UInt8], row: OwnerRow)?

    /// Adds one `hourly` entry; returns the previous owner-hour's sum when this entry begins another.
    mutating func add(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws(LedgerError) -> (
        key: [UInt8], row: OwnerRow
    )? {
        let ownerKey = try OwnerRow.key(ofHourlyKey: key)
        var finished: (key: [UInt8], row: OwnerRow)?
        if let current, current.key != ownerKey {
            finished = current
            self.current = nil
        }
        var sum = current ?? (ownerKey, OwnerRow())
        current = nil
        try sum.row.add(try ProjectionFormat.decodeRow(value), sign: 1)
        current = sum
        return finished
    }

    /// The last owner-hour's sum, once every row has been added.
    mutating func finish() -> (key: [UInt8], row: OwnerRow)? {
        defer { current = nil }
        return current
    }
}

extension Ledger {
    /// Rewrites `owner_hourly` from the stored `hourly` rows at or after `from` (rebuild, and with it upgrades).
    func rewriteOwnerRows(from: Timestamp, in txn: borrowing WriteTransaction) throws {
        var start = ByteWriter(capacity: 8)
        start.writeOrdered(from.microseconds)
        let stale = try txn.writeCursor(schema.ownerHourly)
        while try stale.reading.rawSeek(atLeastBytes: start.bytes) != nil { try stale.deleteCurrent() }
        var sums = OwnerRowSums()
        let rows = try txn.cursor(schema.hourly)
        var entry = try rows.rawSeek(atLeastBytes: start.bytes)
        while let current = entry {
            if let (key, row) = try sums.add(key: current.key, value: current.value) {
                try txn.put(schema.ownerHourly, encoded: EncodedKey(encodedBytes: key), row)
            }
            entry = try rows.rawNext()
        }
        if let (key, row) = sums.finish() {
            try txn.put(schema.ownerHourly, encoded: EncodedKey(encodedBytes: key), row)
        }
    }
}
