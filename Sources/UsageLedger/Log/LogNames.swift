import LMDBStorage
import LedgerCore

/// A resource as the log knows it: its identity and its owner (the owner never changes: `owner_mismatch`).
struct ResourceName: Sendable, Equatable {
    var resource: ResourceID
    var owner: String
}

/// A `resource_names` value: `str type, str id, str owner` (str = varint length + UTF-8).
enum ResourceNameCodec: ByteArrayCodec {
    static func encode(_ name: ResourceName) -> [UInt8] {
        var writer = ByteWriter(capacity: 3 + name.resource.type.utf8.count + name.resource.id.utf8.count + 16)
        writer.writeString(name.resource.type)
        writer.writeString(name.resource.id)
        writer.writeString(name.owner)
        return writer.bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> ResourceName {
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            let type = try reader.readString(), id = try reader.readString(), owner = try reader.readString()
            guard reader.remaining == 0 else {
                throw ByteReader.Malformed(offset: reader.offset, expected: "the end of the entry")
            }
            return ResourceName(resource: ResourceID(type: type, id: id), owner: owner)
        } catch {
            throw .malformedRecord(
                table: "resource_names", reason: "expected \(error.expected) at byte \(error.offset)")
        }
    }
}

/// The names an event record refers to by number (format 6): a resource by its number (`resource_names`),
/// a meter by the number it was interned under (`meter_names`, and `meter_numbers` back).
///
/// One value serves one transaction body and remembers what it looked up, so that a batch, a page of the
/// feed or a timeline reads each name once. It is never kept past that body: what a transaction that then
/// aborts interned must not outlive it.
struct LogNames {
    private let schema: Schema
    private var meterNumbers: [String: UInt64] = [:]
    private var meterNames: [UInt64: String] = [:]
    private var resources: [UInt64: ResourceName] = [:]

    init(schema: Schema) { self.schema = schema }

    /// The number `name` was interned under, or nil when no event has carried it.
    mutating func meterNumber(_ name: String, in txn: borrowing some ReadableTransaction & ~Copyable)
        throws(StorageError) -> UInt64?
    {
        if let number = meterNumbers[name] { return number }
        guard let number = try txn.get(schema.meterNumbers, name) else { return nil }
        meterNumbers[name] = number
        return number
    }

    /// The number of `name`, interned under the next free number when it is new. Numbers are never reused:
    /// the next one is kept in `meta`, which a purge keeps.
    mutating func internMeter(_ name: String, in txn: borrowing WriteTransaction) throws(StorageError) -> UInt64 {
        if let number = try meterNumber(name, in: txn) { return number }
        let number = try txn.get(Meta.nextMeterNumber, in: schema.meta) ?? 1
        try txn.put(Meta.nextMeterNumber, number + 1, in: schema.meta)
        try txn.put(schema.meterNames, number, name)
        try txn.put(schema.meterNumbers, name, number)
        meterNumbers[name] = number
        meterNames[number] = name
        return number
    }

    /// The name interned under `number`; a number nothing was interned under is damage.
    mutating func meterName(_ number: UInt64, seq: UInt64, in txn: borrowing some ReadableTransaction & ~Copyable)
        throws -> String
    {
        try Self.entry(number, of: schema.meterNames, memo: &meterNames, seq: seq, what: "meter", in: txn)
    }

    /// The resource registered under `number`; an unregistered number is damage.
    mutating func resource(_ number: UInt64, seq: UInt64, in txn: borrowing some ReadableTransaction & ~Copyable)
        throws -> ResourceName
    {
        try Self.entry(number, of: schema.resourceNames, memo: &resources, seq: seq, what: "resource", in: txn)
    }

    /// The entry of `table` under `number`, read once per body: `memo` keeps what was read.
    private static func entry<Codec: StorageCodec>(
        _ number: UInt64, of table: Table<BigEndianUInt64, Codec>, memo: inout [UInt64: Codec.Item], seq: UInt64,
        what: String, in txn: borrowing some ReadableTransaction & ~Copyable
    ) throws -> Codec.Item {
        if let found = memo[number] { return found }
        guard let found = try txn.get(table, number) else {
            throw LedgerError.corrupt(
                reason: "event seq \(seq): \(what) number \(number) has no entry in \(table.name)")
        }
        memo[number] = found
        return found
    }

    /// Numbers for `meters`, in their order: interned when `interning`, else nil when one is unknown.
    mutating func numbers(of meters: Meters?, interning: Bool, in txn: borrowing WriteTransaction)
        throws(StorageError) -> [UInt64]?
    {
        guard let meters else { return [] }
        var numbers: [UInt64] = []
        numbers.reserveCapacity(meters.count)
        for (name, _) in meters {
            if interning {
                numbers.append(try internMeter(name, in: txn))
            } else {
                guard let number = try meterNumber(name, in: txn) else { return nil }
                numbers.append(number)
            }
        }
        return numbers
    }
}
