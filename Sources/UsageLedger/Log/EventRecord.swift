import LMDBStorage
import LedgerCore

/// The binary encoding of an event in the `events` database (record version 2, format 6):
///
/// ```
/// u8     record version (2)
/// i64    recorded_at, µs (sign-flipped big-endian)
/// ---- payload: exactly the submitted event, canonical (meters and attributes sorted by name) ----
/// u8     kind (1 started, 2 was_running, 3 stopped, 4 adjustment)
/// str    id                                        (str = varint length + UTF-8)
/// varint resource number                           (`resource_names` holds its type, id and owner)
/// i64    occurred_at, µs (sign-flipped big-endian)
/// u8     presence flags: 1 footprint, 2 deltas, 4 reason
/// [varint n, n × (varint meter number, zigzag varint value)]   footprint, if flagged
/// [varint n, n × (varint meter number, zigzag varint value)]   deltas, if flagged
/// [str]                                                        reason, if flagged
/// varint n, n × (str key, str value)                           attributes
/// ---- end of payload ----
/// u32    CRC-32 (IEEE) of every byte before it, big-endian
/// ```
///
/// Meter numbers are interned in `meter_names` (`LogNames`). Two submissions of the same id are the same
/// event exactly when their payload bytes are equal. Version 1 (formats 1 to 5) held the resource's three
/// strings and the meter names; it is read only by the upgrade.
enum EventRecord {
    static let version: UInt8 = 2
    /// The record version of formats 1 to 5.
    static let version1: UInt8 = 1
    /// Bytes before the payload.
    static let headerSize = 9
    /// Bytes after the payload.
    static let trailerSize = 4

    /// A meter as a record holds it: its interned number and its value.
    struct NumberedMeter: Sendable, Equatable {
        var number: UInt64
        var value: Int64
    }

    /// What a record holds, with the resource and the meters by number.
    struct Fields: Sendable, Equatable {
        var recordedAt: Timestamp
        var kind: EventKind
        var id: String
        var resourceNumber: UInt64
        var occurredAt: Timestamp
        var footprint: [NumberedMeter]?
        var deltas: [NumberedMeter]?
        var reason: String?
        var attributes: Attributes

        /// The event these fields hold, its resource and meter names looked up in `names`.
        func resolved(seq: UInt64, names: inout LogNames, in txn: borrowing some ReadableTransaction & ~Copyable)
            throws -> RecordedEvent
        {
            let resource = try names.resource(resourceNumber, seq: seq, in: txn)
            func meters(_ numbered: [NumberedMeter]?) throws -> Meters? {
                guard let numbered else { return nil }
                var pairs: [(String, Int64)] = []
                pairs.reserveCapacity(numbered.count)
                for meter in numbered {
                    pairs.append((try names.meterName(meter.number, seq: seq, in: txn), meter.value))
                }
                return Meters(pairs)
            }
            let event = UsageEvent(
                id: id, kind: kind, resource: resource.resource, owner: resource.owner, occurredAt: occurredAt,
                footprint: try meters(footprint), deltas: try meters(deltas), reason: reason, attributes: attributes)
            return RecordedEvent(seq: seq, recordedAt: recordedAt, event: event)
        }
    }

    /// The canonical payload bytes of `fields`.
    static func payload(of fields: Fields) -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        writer.write(kindCode(fields.kind))
        writer.writeString(fields.id)
        writer.writeVarint(fields.resourceNumber)
        writer.writeOrdered(fields.occurredAt.microseconds)
        var flags: UInt8 = 0
        if fields.footprint != nil { flags |= 1 }
        if fields.deltas != nil { flags |= 2 }
        if fields.reason != nil { flags |= 4 }
        writer.write(flags)
        for meters in [fields.footprint, fields.deltas] {
            guard let meters else { continue }
            writer.writeVarint(UInt64(meters.count))
            for meter in meters {
                writer.writeVarint(meter.number)
                writer.writeSignedVarint(meter.value)
            }
        }
        if let reason = fields.reason { writer.writeString(reason) }
        writeAttributes(fields.attributes, into: &writer)
        return writer.bytes
    }

    /// A whole record: header, `payload`, checksum.
    static func record(payload: [UInt8], recordedAt: Timestamp, version: UInt8 = version) -> [UInt8] {
        var writer = ByteWriter(capacity: headerSize + payload.count + trailerSize)
        writer.write(version)
        writer.writeOrdered(recordedAt.microseconds)
        writer.write(contentsOf: payload)
        writer.writeBigEndian(CRC32.checksum(writer.bytes))
        return writer.bytes
    }

    /// The payload bytes inside a stored record, after checking its version and checksum.
    static func storedPayload(_ record: UnsafeRawBufferPointer, seq: UInt64) throws(LedgerError)
        -> UnsafeRawBufferPointer
    {
        try verify(record, seq: seq, version: version)
        return UnsafeRawBufferPointer(rebasing: record[headerSize..<(record.count - trailerSize)])
    }

    /// Checks a record's length, version and checksum.
    static func verify(_ record: UnsafeRawBufferPointer, seq: UInt64, version expected: UInt8) throws(LedgerError) {
        guard record.count >= headerSize + trailerSize + 1 else {
            throw .corrupt(reason: "event seq \(seq): record of \(record.count) bytes is too short")
        }
        guard record[0] == expected else {
            throw .corrupt(reason: "event seq \(seq): record version \(record[0]), expected \(expected)")
        }
        let body = UnsafeRawBufferPointer(rebasing: record[0..<(record.count - trailerSize)])
        let stored = UInt32(
            bigEndian: record.loadUnaligned(fromByteOffset: record.count - trailerSize, as: UInt32.self))
        guard CRC32.checksum(body) == stored else {
            throw .corrupt(reason: "event seq \(seq): checksum mismatch")
        }
    }

    /// Decodes a stored record into the event it holds, its names looked up in `names`.
    static func decode(
        _ record: UnsafeRawBufferPointer, seq: UInt64, names: inout LogNames,
        in txn: borrowing some ReadableTransaction & ~Copyable
    ) throws -> RecordedEvent {
        try fields(of: record, seq: seq).resolved(seq: seq, names: &names, in: txn)
    }

    /// The fields of a stored record (version 2), after checking its version and checksum.
    static func fields(of record: UnsafeRawBufferPointer, seq: UInt64) throws(LedgerError) -> Fields {
        try verify(record, seq: seq, version: version)
        var reader = ByteReader(UnsafeRawBufferPointer(rebasing: record[0..<(record.count - trailerSize)]))
        do throws(ByteReader.Malformed) {
            _ = try reader.readByte()
            let recordedAt = Timestamp(microseconds: try reader.readOrderedInt64())
            let kind = try readKind(&reader)
            let id = try reader.readString()
            let resourceNumber = try reader.readVarint()
            let occurredAt = Timestamp(microseconds: try reader.readOrderedInt64())
            let flags = try reader.readByte()
            var footprint: [NumberedMeter]?, deltas: [NumberedMeter]?, reason: String?
            if flags & 1 != 0 { footprint = try readNumberedMeters(&reader) }
            if flags & 2 != 0 { deltas = try readNumberedMeters(&reader) }
            if flags & 4 != 0 { reason = try reader.readString() }
            let attributes = try readAttributes(&reader)
            return Fields(
                recordedAt: recordedAt, kind: kind, id: id, resourceNumber: resourceNumber, occurredAt: occurredAt,
                footprint: footprint, deltas: deltas, reason: reason, attributes: attributes)
        } catch {
            throw .corrupt(
                reason: "event seq \(seq): malformed record, expected \(error.expected) at byte \(error.offset)")
        }
    }

    /// Decodes a version-1 record (formats 1 to 5), which holds every name itself: read by the upgrade only.
    static func decodeVersion1(_ record: UnsafeRawBufferPointer, seq: UInt64) throws(LedgerError) -> RecordedEvent {
        try verify(record, seq: seq, version: version1)
        var reader = ByteReader(UnsafeRawBufferPointer(rebasing: record[0..<(record.count - trailerSize)]))
        do throws(ByteReader.Malformed) {
            _ = try reader.readByte()
            let recordedAt = Timestamp(microseconds: try reader.readOrderedInt64())
            let kind = try readKind(&reader)
            let id = try reader.readString()
            let type = try reader.readString()
            let resourceID = try reader.readString()
            let owner = try reader.readString()
            let occurredAt = Timestamp(microseconds: try reader.readOrderedInt64())
            let flags = try reader.readByte()
            var footprint: Meters?, deltas: Meters?, reason: String?
            if flags & 1 != 0 { footprint = try RecordFields.readMeters(&reader) }
            if flags & 2 != 0 { deltas = try RecordFields.readMeters(&reader) }
            if flags & 4 != 0 { reason = try reader.readString() }
            let attributes = try readAttributes(&reader)
            let event = UsageEvent(
                id: id, kind: kind, resource: ResourceID(type: type, id: resourceID), owner: owner,
                occurredAt: occurredAt,
                footprint: footprint, deltas: deltas, reason: reason, attributes: attributes)
            return RecordedEvent(seq: seq, recordedAt: recordedAt, event: event)
        } catch {
            throw .corrupt(
                reason: "event seq \(seq): malformed record, expected \(error.expected) at byte \(error.offset)")
        }
    }

    private static func writeAttributes(_ attributes: Attributes, into writer: inout ByteWriter) {
        writer.writeVarint(UInt64(attributes.count))
        for (key, value) in attributes {
            writer.writeString(key)
            writer.writeString(value)
        }
    }

    /// The attributes, which end the payload.
    private static func readAttributes(_ reader: inout ByteReader) throws(ByteReader.Malformed) -> Attributes {
        let count = try reader.readVarint()
        guard count <= UInt64(reader.remaining) else {
            throw ByteReader.Malformed(offset: reader.offset, expected: "attributes")
        }
        var attributes: [(String, String)] = []
        for _ in 0..<count { attributes.append((try reader.readString(), try reader.readString())) }
        guard reader.remaining == 0 else {
            throw ByteReader.Malformed(offset: reader.offset, expected: "the end of the record")
        }
        return Attributes(attributes)
    }

    private static func readKind(_ reader: inout ByteReader) throws(ByteReader.Malformed) -> EventKind {
        guard let kind = kind(fromCode: try reader.readByte()) else {
            throw ByteReader.Malformed(offset: reader.offset, expected: "an event kind")
        }
        return kind
    }

    private static func readNumberedMeters(_ reader: inout ByteReader) throws(ByteReader.Malformed)
        -> [NumberedMeter]
    {
        let count = try reader.readVarint()
        guard count <= UInt64(reader.remaining) else {
            throw ByteReader.Malformed(offset: reader.offset, expected: "meters")
        }
        var meters: [NumberedMeter] = []
        meters.reserveCapacity(Int(count))
        for _ in 0..<count {
            meters.append(NumberedMeter(number: try reader.readVarint(), value: try reader.readSignedVarint()))
        }
        return meters
    }

    static func kindCode(_ kind: EventKind) -> UInt8 {
        switch kind {
        case .started: return 1
        case .wasRunning: return 2
        case .stopped: return 3
        case .adjustment: return 4
        }
    }

    static func kind(fromCode code: UInt8) -> EventKind? {
        switch code {
        case 1: return .started
        case 2: return .wasRunning
        case 3: return .stopped
        case 4: return .adjustment
        default: return nil
        }
    }
}

extension EventRecord.Fields {
    /// `event`'s fields, given its resource's number and the numbers of its footprint's and deltas' meters
    /// (in the meters' order). In an extension, so that the memberwise initializer stays.
    init(
        _ event: UsageEvent, recordedAt: Timestamp, resourceNumber: UInt64, footprintNumbers: [UInt64],
        deltaNumbers: [UInt64]
    ) {
        func numbered(_ meters: Meters?, _ numbers: [UInt64]) -> [EventRecord.NumberedMeter]? {
            meters.map { zip(numbers, $0).map { EventRecord.NumberedMeter(number: $0, value: $1.value) } }
        }
        self.init(
            recordedAt: recordedAt, kind: event.kind, id: event.id, resourceNumber: resourceNumber,
            occurredAt: event.occurredAt, footprint: numbered(event.footprint, footprintNumbers),
            deltas: numbered(event.deltas, deltaNumbers), reason: event.reason, attributes: event.attributes)
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as zlib computes it.
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { table in
            for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        }
        return crc ^ 0xFFFF_FFFF
    }
}
