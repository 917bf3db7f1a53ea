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
    var meters = MeterSums()
    var adjustments = MeterSums()

    struct Entry: Equatable {
        var count: Int64
        var sum: Int128
    }

    static let version: UInt8 = 2

    /// One steady hour of a resource with `footprint`: one row's worth, derived from the span.
    static func steadyHour(_ footprint: Meters) throws(LedgerError) -> OwnerRow {
        var row = OwnerRow()
        try row.add(try SteadySpan.hourAmounts(footprint), sign: 1)
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
        try meters.add(change.meters, fieldSuffix: "_seconds")
        try adjustments.add(change.adjustments, fieldSuffix: "")
    }

    private static func add(
        _ value: Int128, sign: Int64, to entries: inout MeterSums, name: String,
        field: @autoclosure () -> String
    ) throws(LedgerError) {
        try entries.add(name, Entry(count: sign, sum: try signed(value, sign, field())), field: field())
    }

    /// A row count plus a change; only damaged counts can overflow.
    static func count(_ count: Int64, plus change: Int64) throws(LedgerError) -> Int64 {
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

    /// The usage it holds, as a query returns it: the meters that some row carries.
    var amounts: UsageAmounts {
        var amounts = UsageAmounts()
        amounts.runningMicroseconds = running
        for item in meters.items where item.count > 0 { amounts.meterMicroseconds[item.name] = item.sum }
        for item in adjustments.items where item.count > 0 { amounts.adjustments[item.name] = item.sum }
        return amounts
    }

    /// Whether it is a consistent stored value: positive row count, and every meter carried by at least one
    /// row and at most all of them.
    var isWellFormed: Bool {
        rows > 0 && (meters.items.allSatisfy { $0.count > 0 && $0.count <= rows })
            && adjustments.items.allSatisfy { $0.count > 0 && $0.count <= rows }
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
            writer.writeVarint(UInt64(entries.items.count))
            for item in entries.items {  // in name order
                writer.writeString(item.name)
                writer.writeVarint(UInt64(max(0, item.count)))
                RecordFields.writeCompact128(item.sum, into: &writer)
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
            let sums: RecordFields.SumEncoding = version == 1 ? .fixed16 : .compact
            func sum(_ reader: inout ByteReader) throws(ByteReader.Malformed) -> Int128 { try sums.read(&reader) }
            rows = Int64(clamping: try reader.readVarint())
            running = try sum(&reader)
            for set in 0..<2 {
                let count = try reader.readVarint()
                guard count <= UInt64(reader.remaining) else {
                    throw ByteReader.Malformed(offset: reader.offset, expected: "meters")
                }
                var entries = MeterSums()
                for _ in 0..<count {
                    let name = try reader.readString()
                    let carried = Int64(clamping: try reader.readVarint())
                    let value = try sum(&reader)
                    // A repeated name is damage: refused, not summed.
                    guard entries.set(name, Entry(count: carried, sum: value)) else {
                        throw ByteReader.Malformed(offset: reader.offset, expected: "a meter named once")
                    }
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

/// Per-meter counts and sums of an owner row, sorted by name: rows carry a few meters, so a sorted array
/// adds and merges without hashing (a dictionary per row was most of a rollup's time).
struct MeterSums: Equatable {
    struct Item: Equatable {
        var name: String
        var count: Int64
        var sum: Int128
    }

    /// The entries, in name order, none with a zero count and sum.
    private(set) var items: [Item] = []

    /// Adds `change` to the entry `name`; an entry that reaches zero count and sum goes.
    mutating func add(_ name: String, _ change: OwnerRow.Entry, field: @autoclosure () -> String) throws(LedgerError) {
        var low = 0, high = items.count
        while low < high {
            let middle = (low + high) / 2
            if items[middle].name < name { low = middle + 1 } else { high = middle }
        }
        if low < items.count, items[low].name == name {
            items[low].count = try OwnerRow.count(items[low].count, plus: change.count)
            items[low].sum = try checkedAdd(items[low].sum, change.sum, field())
            if items[low].count == 0 && items[low].sum == 0 { items.remove(at: low) }
        } else if change.count != 0 || change.sum != 0 {
            items.insert(Item(name: name, count: change.count, sum: change.sum), at: low)
        }
    }

    /// Adds every entry of `other` (a merge of two sorted lists when, as usual, the names are the same).
    mutating func add(_ other: MeterSums, fieldSuffix: String) throws(LedgerError) {
        if items.count == other.items.count, zip(items, other.items).allSatisfy({ $0.name == $1.name }) {
            var index = items.count - 1
            while index >= 0 {
                let change = other.items[index]
                items[index].count = try OwnerRow.count(items[index].count, plus: change.count)
                items[index].sum = try checkedAdd(items[index].sum, change.sum, change.name + fieldSuffix)
                if items[index].count == 0 && items[index].sum == 0 { items.remove(at: index) }
                index -= 1
            }
            return
        }
        for item in other.items {
            try add(item.name, OwnerRow.Entry(count: item.count, sum: item.sum), field: item.name + fieldSuffix)
        }
    }

    /// Sets a new entry while decoding; false when `name` is already there.
    mutating func set(_ name: String, _ entry: OwnerRow.Entry) -> Bool {
        if items.contains(where: { $0.name == name }) { return false }
        items.append(Item(name: name, count: entry.count, sum: entry.sum))
        if items.count > 1, items[items.count - 2].name > name { items.sort { $0.name < $1.name } }
        return true
    }

    /// Every count and sum negated (a removal).
    func negated() throws(LedgerError) -> MeterSums {
        var result = self
        for index in result.items.indices {
            result.items[index].count = 0 - result.items[index].count
            result.items[index].sum = try OwnerRow.negate(result.items[index].sum)
        }
        return result
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
        removal.meters = try other.meters.negated()
        removal.adjustments = try other.adjustments.negated()
        for _ in 0..<(0 - times) { try add(removal) }
    }

    static func negate(_ value: Int128) throws(LedgerError) -> Int128 {
        let (negated, overflow) = Int128(0).subtractingReportingOverflow(value)
        guard !overflow else {
            throw LedgerError.overflow(field: "running_seconds", reason: "the sum exceeds 128 bits")
        }
        return negated
    }
}

/// Every owner-hour's sum of the stored rows and spans, in `owner_hourly` key order (hour, then owner):
/// rows are read in key order, spans become rate changes swept hour by hour, so memory holds the spans'
/// start and end points and one rate per owner, never every owner-hour. Owners are numbered in byte
/// order, so an hour's steady rates and its rows (which come in owner order) merge without sorting.
struct StoredOwnerRows {
    private var points: [(hour: Int64, owner: Int32, rate: Int32, sign: Int8)] = []
    /// Owners' UTF-8, in byte order (an owner's number is its place here).
    private var owners: [[UInt8]] = []
    private var rates: [OwnerRow] = []
    private let from: Int64
    /// Spans that reach outside `[from, until)`: damage (every stored span lies within the hours the ledger
    /// holds, before the rollup watermark); they are clipped so that the sweep stays within those hours.
    private(set) var spansOutside = 0

    /// Reads every span of `steady`, clipped to `[from, until)`.
    init(from: Int64, until: Int64, ledger: Ledger, in txn: borrowing some ReadableTransaction & ~Copyable) throws {
        self.from = from
        var ownerNumbers: [ByteKey: Int32] = [:]
        var rateNumbers: [ByteKey: Int32] = [:]
        var unsorted: [(hour: Int64, owner: Int32, rate: Int32, sign: Int8)] = []
        var ownerBytes: [[UInt8]] = []
        let cursor = try txn.cursor(ledger.schema.steady)
        var entry = try cursor.rawFirst()
        while let current = entry {
            let (start, hours, footprint) = try SteadySpan.parse(key: current.key, value: current.value)
            entry = try cursor.rawNext()
            let end = start + hours * Timestamp.microsecondsPerHour
            if end > until || start < from { spansOutside += 1 }
            guard end > from, start < until else { continue }
            // Spans of one owner are adjacent (the key begins with it): look it up only when it changes.
            let owner = try Self.owner(ofSpanKey: current.key)
            let ownerNumber: Int32
            if let last = ownerBytes.last, last.elementsEqual(owner) {
                ownerNumber = Int32(ownerBytes.count - 1)
            } else if let known = ownerNumbers[ByteKey(Array(owner))] {
                ownerNumber = known
            } else {
                ownerNumber = Int32(ownerBytes.count)
                ownerBytes.append(Array(owner))
                ownerNumbers[ByteKey(Array(owner))] = ownerNumber
            }
            let footprintKey = ByteKey(Array(footprint))
            let rate = rateNumbers[footprintKey] ?? Int32(rates.count)
            if rate == Int32(rates.count) {
                let meters = try SteadySpanValueCodec.decode(current.value).footprint
                rates.append(try OwnerRow.steadyHour(meters))
                rateNumbers[footprintKey] = rate
            }
            unsorted.append((max(start, from), ownerNumber, rate, 1))
            unsorted.append((min(end, until), ownerNumber, rate, -1))
        }
        // Renumber owners in byte order.
        let order = ownerBytes.indices.sorted { ownerBytes[$0].lexicographicallyPrecedes(ownerBytes[$1]) }
        var rank = [Int32](repeating: 0, count: ownerBytes.count)
        for (place, index) in order.enumerated() { rank[index] = Int32(place) }
        owners = order.map { ownerBytes[$0] }
        points = unsorted.map { ($0.hour, rank[Int($0.owner)], $0.rate, $0.sign) }
        points.sort { $0.hour < $1.hour }
    }

    /// The owner a `steady` key begins with (its bytes up to the first NUL).
    private static func owner(ofSpanKey key: UnsafeRawBufferPointer) throws(LedgerError) -> UnsafeRawBufferPointer {
        guard let end = key.firstIndex(of: 0) else { throw .corrupt(reason: "a steady key does not hold an owner") }
        return UnsafeRawBufferPointer(rebasing: key[..<end])
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
        var steady = [OwnerRow?](repeating: nil, count: owners.count)
        var active: [Int32] = []  // owners with a steady rate now, in byte order
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
            var nextHour = min(rowHour ?? Int64.max, next < points.count ? points[next].hour : Int64.max)
            if !active.isEmpty {
                // Spans end by year 9999 (their starts are checked), so this cannot overflow unless damaged.
                let (following, overflow) = hour.addingReportingOverflow(Timestamp.microsecondsPerHour)
                guard !overflow else { throw LedgerError.corrupt(reason: "a steady span runs past the last hour") }
                nextHour = min(nextHour, following)
            }
            guard nextHour != Int64.max else { return }
            hour = nextHour
            while next < points.count, points[next].hour <= hour {
                let point = points[next]
                try apply(point, to: &steady, active: &active)
                next += 1
            }
            var owner = 0
            while true {
                let rowOwner = try row.flatMap { current throws(LedgerError) -> [UInt8]? in
                    guard ProjectionFormat.hour(ofHourlyKey: current.key) == hour else { return nil }
                    return Array(try OwnerRow.key(ofHourlyKey: current.key).dropFirst(8))
                }
                let steadyOwner = owner < active.count ? owners[Int(active[owner])] : nil
                guard rowOwner != nil || steadyOwner != nil else { break }
                // The smaller owner goes first; equal owners merge.
                let takeSteady =
                    steadyOwner.map { steady in rowOwner.map { !$0.lexicographicallyPrecedes(steady) } ?? true }
                    ?? false
                let ownerBytes = takeSteady ? steadyOwner ?? [] : rowOwner ?? []
                var sum = OwnerRow()
                if takeSteady, let rate = steady[Int(active[owner])] {
                    sum = rate
                    owner += 1
                }
                while let current = row, ProjectionFormat.hour(ofHourlyKey: current.key) == hour,
                    try OwnerRow.key(ofHourlyKey: current.key).dropFirst(8).elementsEqual(ownerBytes)
                {
                    try sum.add(try ProjectionFormat.decodeRow(current.value), sign: 1)
                    row = try rows.rawNext()
                }
                try visit(OwnerRow.key(hourBytes: hour, ownerBytes: ownerBytes), sum)
            }
        }
    }

    /// Applies one rate change to the owners' steady rates, keeping `active` in byte order.
    private func apply(
        _ point: (hour: Int64, owner: Int32, rate: Int32, sign: Int8), to steady: inout [OwnerRow?],
        active: inout [Int32]
    ) throws {
        var rate = steady[Int(point.owner)] ?? OwnerRow()
        try rate.add(rates[Int(point.rate)], times: Int64(point.sign))
        let isActive = rate != OwnerRow()
        steady[Int(point.owner)] = isActive ? rate : nil
        var low = 0, high = active.count
        while low < high {
            let middle = (low + high) / 2
            if active[middle] < point.owner { low = middle + 1 } else { high = middle }
        }
        let present = low < active.count && active[low] == point.owner
        if isActive && !present { active.insert(point.owner, at: low) }
        if !isActive && present { active.remove(at: low) }
    }
}

extension Ledger {
    /// Rewrites all of `owner_hourly` from the stored `hourly` rows and `steady` spans (rebuild, and with it
    /// upgrades), sweeping the hours in `[from, until)`: no stored row or span lies outside them.
    func rewriteOwnerRows(from: Timestamp, until: Timestamp, in txn: borrowing WriteTransaction) throws {
        try txn.clear(schema.ownerHourly.id)
        let stored = try StoredOwnerRows(
            from: from.microseconds, until: until.microseconds, ledger: self, in: txn)
        guard stored.spansOutside == 0 else {
            throw LedgerError.corrupt(
                reason: "\(stored.spansOutside) steady spans lie outside the hours the ledger holds (damage)")
        }
        try stored.forEach(ledger: self, in: txn) { key, row in
            try txn.put(schema.ownerHourly, encoded: EncodedKey(encodedBytes: key), row)
        }
    }
}
