import LMDBStorage
import LedgerCore

/// What a table holds, which decides who writes it and what `rebuild`, `purge-and-reseed` and `verify` do
/// with it.
enum TableRole: Sendable {
    /// Counters, versions and watermarks (`meta`): kept by rebuild and purge.
    case meta
    /// The log itself: what was recorded; purge empties it, rebuild reads it.
    case log
    /// An index of the log, written with it in the same transaction; purge empties it, rebuild reads it.
    case index
    /// Derived from the log: rebuild clears and refills it, purge empties it, verify compares it.
    case projection
}

/// What `rebuild` does with a projection table.
enum RebuildRule: Sendable {
    /// Cleared, then refilled from the log.
    case refill
    /// Entries of hours at or after the compaction horizon are replaced; earlier hours are sealed (their
    /// events are gone, the rows are what survives compaction).
    case refillFromHorizon
    /// Spans are cut at the compaction horizon: the part before it is sealed, the rest is refilled.
    case cutAtHorizon
    /// Recomputed from the `hourly` rows and `steady` spans once they are rebuilt.
    case recomputeFromRows
}

/// One table of the on-disk format, declared once: its name, role, the version byte its records carry
/// (nil for fixed-layout values with no version byte: numbers, a kind code, UTF-8), and for projections
/// how `rebuild` renews it.
struct TableDeclaration: Sendable, Hashable {
    let name: String
    let role: TableRole
    let recordVersion: UInt8?
    var rebuild: RebuildRule? = nil
}

/// The ledger's tables, each typed by its key codec and value codec (`docs/format.md` is their prose).
/// Opening, `rebuild`, `purge-and-reseed`, `verify` and `stats` go through `Schema.declarations`, so a
/// table added here is opened, cleared and counted everywhere it must be.
struct Schema: Sendable {
    static let meta = TableDeclaration(name: "meta", role: .meta, recordVersion: nil)
    static let events = TableDeclaration(name: "events", role: .log, recordVersion: EventRecord.version)
    static let eventIDs = TableDeclaration(name: "event_ids", role: .index, recordVersion: nil)
    static let resources = TableDeclaration(name: "resources", role: .index, recordVersion: nil)
    static let timeline = TableDeclaration(name: "timeline", role: .index, recordVersion: nil)
    /// A resource's identity and owner under its number, which event records carry instead (format 6).
    static let resourceNames = TableDeclaration(name: "resource_names", role: .index, recordVersion: nil)
    /// Meter names interned for event records (format 6): number to name, and name to number.
    static let meterNames = TableDeclaration(name: "meter_names", role: .index, recordVersion: nil)
    static let meterNumbers = TableDeclaration(name: "meter_numbers", role: .index, recordVersion: nil)
    static let resourceState = TableDeclaration(
        name: "resource_state", role: .projection, recordVersion: ProjectionFormat.stateVersion, rebuild: .refill)
    static let running = TableDeclaration(name: "running", role: .projection, recordVersion: nil, rebuild: .refill)
    static let ownerTotals = TableDeclaration(
        name: "owner_totals", role: .projection, recordVersion: nil, rebuild: .refill)
    static let hourly = TableDeclaration(
        name: "hourly", role: .projection, recordVersion: ProjectionFormat.rowVersion, rebuild: .refillFromHorizon)
    /// What compaction kept of pruned events: not derivable from the log that remains, so rebuild keeps it.
    static let compactionBase = TableDeclaration(
        name: "compaction_base", role: .index, recordVersion: ProjectionFormat.baseVersion)
    static let pending = TableDeclaration(name: "pending", role: .projection, recordVersion: nil, rebuild: .refill)
    static let ownerHourly = TableDeclaration(
        name: "owner_hourly", role: .projection, recordVersion: OwnerRow.version, rebuild: .recomputeFromRows)
    /// Steady hours (a whole hour running with one footprint, no event): spans instead of rows (format 5).
    static let steady = TableDeclaration(
        name: "steady", role: .projection, recordVersion: SteadySpan.version, rebuild: .cutAtHorizon)

    /// Every table, in the order `docs/format.md` lists them.
    static let declarations = [
        meta, events, eventIDs, resources, timeline, resourceState, running, ownerTotals, hourly, compactionBase,
        pending, ownerHourly, steady, resourceNames, meterNames, meterNumbers,
    ]

    let meta: Table<UTF8Text, RawBytes>
    let events: Table<BigEndianUInt64, RawBytes>
    let eventIDs: Table<UTF8Text, VarintUInt64>
    let resources: Table<ResourceKeyCodec, ResourceEntryCodec>
    let timeline: Table<TimelineKeyCodec, SingleByte>
    let resourceNames: Table<BigEndianUInt64, ResourceNameCodec>
    let meterNames: Table<BigEndianUInt64, UTF8Text>
    let meterNumbers: Table<UTF8Text, BigEndianUInt64>
    let resourceState: Table<BigEndianUInt64, ResourceStateCodec>
    let running: Table<OwnedResourceKeyCodec, BigEndianUInt64>
    let ownerTotals: Table<OwnerTypeKeyCodec, OwnerTotalsCodec>
    let hourly: Table<HourlyKeyCodec, UsageAmountsCodec>
    let compactionBase: Table<BigEndianUInt64, CompactionBaseCodec>
    let pending: Table<OwnedResourceKeyCodec, BigEndianUInt64>
    let ownerHourly: Table<OwnerHourKeyCodec, OwnerRowCodec>
    let steady: Table<SteadySpanKeyCodec, SteadySpanValueCodec>
    /// Every table's identity, by declaration.
    let identities: [TableDeclaration: TableID]

    /// Types the tables `Environment.openTables` opened (by the names of `declarations`).
    init(opened: [String: TableID]) throws(StorageError) {
        meta = try Table(Self.meta.name, in: opened)
        events = try Table(Self.events.name, in: opened)
        eventIDs = try Table(Self.eventIDs.name, in: opened)
        resources = try Table(Self.resources.name, in: opened)
        timeline = try Table(Self.timeline.name, in: opened)
        resourceNames = try Table(Self.resourceNames.name, in: opened)
        meterNames = try Table(Self.meterNames.name, in: opened)
        meterNumbers = try Table(Self.meterNumbers.name, in: opened)
        resourceState = try Table(Self.resourceState.name, in: opened)
        running = try Table(Self.running.name, in: opened)
        ownerTotals = try Table(Self.ownerTotals.name, in: opened)
        hourly = try Table(Self.hourly.name, in: opened)
        compactionBase = try Table(Self.compactionBase.name, in: opened)
        pending = try Table(Self.pending.name, in: opened)
        ownerHourly = try Table(Self.ownerHourly.name, in: opened)
        steady = try Table(Self.steady.name, in: opened)
        var identities: [TableDeclaration: TableID] = [:]
        for declaration in Self.declarations {
            guard let id = opened[declaration.name] else { throw .tableMissing(declaration.name) }
            identities[declaration] = id
        }
        self.identities = identities
    }

    /// The tables of the given roles, in declaration order.
    func tables(_ roles: Set<TableRole>) -> [TableID] {
        Self.declarations.filter { roles.contains($0.role) }.compactMap { identities[$0] }
    }

    /// Every table, in declaration order.
    var all: [TableID] { Self.declarations.compactMap { identities[$0] } }
}

// MARK: - Key codecs

/// The `count` NUL-separated UTF-8 fields of a key (no field holds a NUL; with `maxSplits`, the last may).
private func fields(of bytes: UnsafeRawBufferPointer, count: Int, maxSplits: Int = Int.max, _ malformed: String)
    throws(StorageError) -> [String]
{
    let parts = bytes.split(separator: 0, maxSplits: maxSplits, omittingEmptySubsequences: false)
    guard parts.count == count else { throw .malformedRecord(table: "", reason: malformed) }
    return parts.map { String(decoding: $0, as: UTF8.self) }
}

/// `resources` key: type, NUL, id (neither may contain NUL, so the key is unambiguous).
enum ResourceKeyCodec: ByteArrayCodec {
    static func encode(_ resource: ResourceID) -> [UInt8] {
        var key = [UInt8]()
        key.reserveCapacity(resource.type.utf8.count + 1 + resource.id.utf8.count)
        key.append(contentsOf: resource.type.utf8)
        key.append(0)
        key.append(contentsOf: resource.id.utf8)
        return key
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> ResourceID {
        let parts = try fields(of: bytes, count: 2, maxSplits: 1, "a resources key has no type/id separator")
        return ResourceID(type: parts[0], id: parts[1])
    }
}

/// A `timeline` key's parts.
struct TimelineKey: Sendable, Equatable {
    var resource: UInt64
    var occurredAt: Timestamp
    var seq: UInt64
}

/// `timeline` key: resource number (8, big-endian), occurred_at (8, sign-flipped big-endian), seq (8,
/// big-endian). Sorted, it is each resource's timeline in (occurred_at, seq) order.
enum TimelineKeyCodec: ByteArrayCodec {
    static let size = 24

    static func encode(_ key: TimelineKey) -> [UInt8] {
        var writer = ByteWriter(capacity: size)
        writer.writeBigEndian(key.resource)
        writer.writeOrdered(key.occurredAt.microseconds)
        writer.writeBigEndian(key.seq)
        return writer.bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> TimelineKey {
        guard bytes.count == size else { throw .malformedRecord(table: "", reason: "a timeline key is not 24 bytes") }
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            return TimelineKey(
                resource: try reader.readBigEndianUInt64(),
                occurredAt: Timestamp(microseconds: try reader.readOrderedInt64()),
                seq: try reader.readBigEndianUInt64())
        } catch {
            throw .malformedRecord(table: "", reason: "a timeline key is malformed")
        }
    }

    /// The 8-byte prefix of one resource's timeline keys.
    static func prefix(resource: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 8)
        writer.writeBigEndian(resource)
        return writer.bytes
    }
}

/// A resource named under its owner: the key of `running` and `pending`.
struct OwnedResource: Sendable, Hashable {
    var owner: String
    var resource: ResourceID
}

/// `running` and `pending` key: owner, NUL, type, NUL, id.
enum OwnedResourceKeyCodec: ByteArrayCodec {
    static func encode(_ key: OwnedResource) -> [UInt8] {
        ProjectionFormat.ownerKey(key.owner, type: key.resource.type, id: key.resource.id)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> OwnedResource {
        let parts = try fields(of: bytes, count: 3, "a key does not hold owner, type and id")
        return OwnedResource(owner: parts[0], resource: ResourceID(type: parts[1], id: parts[2]))
    }
}

/// An owner and a resource type: the key of `owner_totals`.
struct OwnerType: Sendable, Hashable {
    var owner: String
    var type: String
}

/// `owner_totals` key: owner, NUL, type.
enum OwnerTypeKeyCodec: ByteArrayCodec {
    static func encode(_ key: OwnerType) -> [UInt8] { ProjectionFormat.ownerKey(key.owner, type: key.type) }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> OwnerType {
        let parts = try fields(of: bytes, count: 2, "an owner_totals key does not hold owner and type")
        return OwnerType(owner: parts[0], type: parts[1])
    }
}

/// An `hourly` key's parts.
struct HourlyKey: Sendable, Hashable {
    var hour: Int64
    var owner: String
    var resource: ResourceID
}

/// `hourly` key: hour start (8, ordered), owner, NUL, type, NUL, id.
enum HourlyKeyCodec: ByteArrayCodec {
    static func encode(_ key: HourlyKey) -> [UInt8] {
        ProjectionFormat.hourlyKey(hour: key.hour, owner: key.owner, resource: key.resource)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> HourlyKey {
        let parts = try decodingRecord { () throws(LedgerError) in try ProjectionFormat.decodeHourlyKey(bytes) }
        return HourlyKey(hour: parts.hour, owner: parts.owner, resource: parts.resource)
    }
}

/// An hour of one owner: the key of `owner_hourly`.
struct OwnerHour: Sendable, Hashable {
    var hour: Int64
    var owner: String
}

/// `owner_hourly` key: hour start (8, ordered), then the owner's UTF-8.
enum OwnerHourKeyCodec: ByteArrayCodec {
    static func encode(_ key: OwnerHour) -> [UInt8] { OwnerRow.key(hour: key.hour, owner: key.owner) }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> OwnerHour {
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            let hour = try reader.readOrderedInt64()
            return OwnerHour(hour: hour, owner: String(decoding: bytes[8...], as: UTF8.self))
        } catch {
            throw .malformedRecord(table: "", reason: "an owner_hourly key is shorter than its hour")
        }
    }
}

// MARK: - Value codecs

/// A `resources` value's parts.
struct ResourceEntry: Sendable, Equatable {
    var number: UInt64
    var owner: String
}

/// A `resources` value: resource number (8, big-endian) then the owner's UTF-8.
enum ResourceEntryCodec: ByteArrayCodec {
    static func encode(_ entry: ResourceEntry) -> [UInt8] {
        var writer = ByteWriter(capacity: 8 + entry.owner.utf8.count)
        writer.writeBigEndian(entry.number)
        writer.write(contentsOf: entry.owner.utf8)
        return writer.bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> ResourceEntry {
        guard bytes.count >= 8,
            let owner = String(
                validating: UnsafeRawBufferPointer(rebasing: bytes[8...]).bindMemory(to: UInt8.self),
                as: UTF8.self)
        else { throw .malformedRecord(table: "", reason: "a resources entry is malformed") }
        return ResourceEntry(number: UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self)), owner: owner)
    }
}

/// An unsigned integer as LEB128, 7 bits a byte (an `event_ids` value: a `seq` in 3 bytes up to 2M, where a
/// fixed encoding takes 8). The decoder refuses trailing bytes.
enum VarintUInt64: ByteArrayCodec {
    static func encode(_ value: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 10)
        writer.writeVarint(value)
        return writer.bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> UInt64 {
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            let value = try reader.readVarint()
            guard reader.remaining == 0 else { throw ByteReader.Malformed(offset: reader.offset, expected: "no more") }
            return value
        } catch {
            throw .malformedRecord(table: "", reason: "not one varint: expected \(error.expected) at \(error.offset)")
        }
    }
}

/// Runs a decoder of the ledger's records and reports its failure as a malformed record.
@inline(__always)
func decodingRecord<T>(_ body: () throws(LedgerError) -> T) throws(StorageError) -> T {
    do { return try body() } catch { throw .malformedRecord(table: "", reason: error.corruptionReason) }
}

/// A `resource_state` value (`ProjectionFormat`, state version 2).
enum ResourceStateCodec: ByteArrayCodec {
    static func encode(_ state: ResourceState) -> [UInt8] { ProjectionFormat.encode(state) }
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> ResourceState {
        try decodingRecord { () throws(LedgerError) in try ProjectionFormat.decodeState(bytes) }
    }
}

/// An `owner_totals` value (`ProjectionFormat.OwnerTotals`).
enum OwnerTotalsCodec: ByteArrayCodec {
    static func encode(_ totals: ProjectionFormat.OwnerTotals) -> [UInt8] { ProjectionFormat.encode(totals) }
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> ProjectionFormat.OwnerTotals {
        try decodingRecord { () throws(LedgerError) in try ProjectionFormat.decodeTotals(bytes) }
    }
}

/// An `hourly` value: one resource-hour's usage (row version 2; version 1 is read during an upgrade).
enum UsageAmountsCodec: ByteArrayCodec {
    static func encode(_ amounts: UsageAmounts) -> [UInt8] { ProjectionFormat.encode(amounts) }
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> UsageAmounts {
        try decodingRecord { () throws(LedgerError) in try ProjectionFormat.decodeRow(bytes) }
    }
}

/// A `compaction_base` value (base version 1).
enum CompactionBaseCodec: ByteArrayCodec {
    static func encode(_ base: CompactionBase) -> [UInt8] { ProjectionFormat.encode(base) }
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> CompactionBase {
        try decodingRecord { () throws(LedgerError) in try ProjectionFormat.decodeBase(bytes) }
    }
}

/// An `owner_hourly` value (owner row version 2; version 1 is read during an upgrade).
enum OwnerRowCodec: ByteArrayCodec {
    static func encode(_ row: OwnerRow) -> [UInt8] { row.encoded() }
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> OwnerRow {
        try decodingRecord { () throws(LedgerError) in try OwnerRow(decoding: bytes) }
    }
}

/// A signed instant stored as the bit pattern of its microseconds, big-endian (`meta` timestamps; not
/// order-preserving, since they are values and never compared as bytes).
enum TimestampValueCodec: StorageCodec {
    static func withEncoded<R>(_ item: Timestamp, _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        try BigEndianUInt64.withEncoded(UInt64(bitPattern: item.microseconds), body)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> Timestamp {
        Timestamp(microseconds: Int64(bitPattern: try BigEndianUInt64.decode(bytes)))
    }
}

// MARK: - meta

/// One entry of `meta`, typed by the codec of its value.
struct MetaField<Codec: StorageCodec>: Sendable {
    let key: String
}

/// The entries of `meta`.
enum Meta {
    static let formatVersion = MetaField<BigEndianUInt32>(key: "format_version")
    static let nextSeq = MetaField<BigEndianUInt64>(key: "next_seq")
    static let nextResourceNumber = MetaField<BigEndianUInt64>(key: "next_resource_number")
    static let nextMeterNumber = MetaField<BigEndianUInt64>(key: "next_meter_number")
    static let eventsByKind = MetaField<RawBytes>(key: "events_by_kind")
    static let appendOutcomes = MetaField<RawBytes>(key: "append_outcomes")
    static let watermark = MetaField<TimestampValueCodec>(key: "watermark")
    static let rollupTarget = MetaField<TimestampValueCodec>(key: "rollup_target")
    static let unmatchedStops = MetaField<BigEndianUInt64>(key: "unmatched_stops")
    static let horizon = MetaField<TimestampValueCodec>(key: "horizon")
    static let prunedThroughSeq = MetaField<BigEndianUInt64>(key: "pruned_through_seq")
    static let snapshotsRetainedFrom = MetaField<TimestampValueCodec>(key: "snapshots_retained_from")
}

extension ReadableTransaction where Self: ~Copyable {
    /// The value of a `meta` entry, or nil when it is not set.
    func get<C>(_ field: MetaField<C>, in meta: Table<UTF8Text, RawBytes>) throws(StorageError) -> C.Item? {
        guard let bytes = try rawGet(meta, field.key) else { return nil }
        do { return try C.decode(bytes) } catch {
            if case .malformedRecord(_, let reason) = error {
                throw .malformedRecord(table: "meta", reason: "\(field.key): \(reason)")
            }
            throw error
        }
    }
}

extension WriteTransaction {
    /// Sets a `meta` entry.
    /// Sets a `meta` entry; with `insertOnly`, returns false and changes nothing when it is already set.
    @discardableResult
    func put<C>(
        _ field: MetaField<C>, _ value: C.Item, in meta: Table<UTF8Text, RawBytes>,
        mode: PutMode = .upsert
    ) throws(StorageError) -> Bool {
        try UTF8Text.withEncoded(field.key) { (key) throws(StorageError) in
            try C.withEncoded(value) { (bytes) throws(StorageError) in
                try rawPut(meta.id, keyBytes: key, valueBytes: bytes, mode: mode)
            }
        }
    }

    /// Removes a `meta` entry.
    func delete<C>(_ field: MetaField<C>, in meta: Table<UTF8Text, RawBytes>) throws(StorageError) {
        try delete(meta, field.key)
    }
}

extension LedgerError {
    /// The reason of a `corrupt` error, or the message of any other: what a malformed record says.
    var corruptionReason: String {
        if case .corrupt(let reason) = self { return reason }
        return message
    }
}
