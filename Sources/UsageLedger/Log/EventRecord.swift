import LMDBStorage
import LedgerCore

/// The binary encoding of an event in the `events` database (record version 1):
///
/// ```
/// u8     record version (1)
/// i64    recorded_at, µs (sign-flipped big-endian)
/// ---- payload: exactly the submitted event, canonical (meters and attributes sorted) ----
/// u8     kind (1 started, 2 was_running, 3 stopped, 4 adjustment)
/// str    id, str resource.type, str resource.id, str resource.owner   (str = varint length + UTF-8)
/// i64    occurred_at, µs (sign-flipped big-endian)
/// u8     presence flags: 1 footprint, 2 deltas, 4 reason
/// [varint n, n × (str name, zigzag varint value)]   footprint, if flagged
/// [varint n, n × (str name, zigzag varint value)]   deltas, if flagged
/// [str]                                             reason, if flagged
/// varint n, n × (str key, str value)                attributes
/// ---- end of payload ----
/// u32    CRC-32 (IEEE) of every byte before it, big-endian
/// ```
///
/// Two submissions of the same id are the same event exactly when their payload bytes are equal.
enum EventRecord {
    static let version: UInt8 = 1
    /// Bytes before the payload.
    static let headerSize = 9
    /// Bytes after the payload.
    static let trailerSize = 4

    /// The canonical payload bytes of `event`.
    static func payload(of event: UsageEvent) -> [UInt8] {
        var writer = ByteWriter(capacity: 128)
        writer.write(kindCode(event.kind))
        writer.writeString(event.id)
        writer.writeString(event.resource.type)
        writer.writeString(event.resource.id)
        writer.writeString(event.owner)
        writer.writeOrdered(event.occurredAt.microseconds)
        var flags: UInt8 = 0
        if event.footprint != nil { flags |= 1 }
        if event.deltas != nil { flags |= 2 }
        if event.reason != nil { flags |= 4 }
        writer.write(flags)
        for meters in [event.footprint, event.deltas] {
            guard let meters else { continue }
            RecordFields.writeMeters(meters, into: &writer)
        }
        if let reason = event.reason { writer.writeString(reason) }
        writer.writeVarint(UInt64(event.attributes.count))
        for (key, value) in event.attributes {
            writer.writeString(key)
            writer.writeString(value)
        }
        return writer.bytes
    }

    /// A whole record: header, `payload`, checksum.
    static func record(payload: [UInt8], recordedAt: Timestamp) -> [UInt8] {
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
        try verify(record, seq: seq)
        return UnsafeRawBufferPointer(rebasing: record[headerSize..<(record.count - trailerSize)])
    }

    /// Checks a record's length, version and checksum.
    static func verify(_ record: UnsafeRawBufferPointer, seq: UInt64) throws(LedgerError) {
        guard record.count >= headerSize + trailerSize + 1 else {
            throw .corrupt(reason: "event seq \(seq): record of \(record.count) bytes is too short")
        }
        guard record[0] == version else {
            throw .corrupt(reason: "event seq \(seq): unknown record version \(record[0])")
        }
        let body = UnsafeRawBufferPointer(rebasing: record[0..<(record.count - trailerSize)])
        let stored = UInt32(
            bigEndian: record.loadUnaligned(fromByteOffset: record.count - trailerSize, as: UInt32.self))
        guard CRC32.checksum(body) == stored else {
            throw .corrupt(reason: "event seq \(seq): checksum mismatch")
        }
    }

    /// Decodes a stored record into the event it holds.
    static func decode(_ record: UnsafeRawBufferPointer, seq: UInt64) throws(LedgerError) -> RecordedEvent {
        try verify(record, seq: seq)
        var reader = ByteReader(UnsafeRawBufferPointer(rebasing: record[0..<(record.count - trailerSize)]))
        do throws(ByteReader.Malformed) {
            _ = try reader.readByte()
            let recordedAt = Timestamp(microseconds: try reader.readOrderedInt64())
            guard let kind = kind(fromCode: try reader.readByte()) else {
                throw ByteReader.Malformed(offset: reader.offset, expected: "an event kind")
            }
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
            let attributeCount = try reader.readVarint()
            guard attributeCount <= UInt64(reader.remaining) else {
                throw ByteReader.Malformed(offset: reader.offset, expected: "attributes")
            }
            var attributes: [(String, String)] = []
            for _ in 0..<attributeCount { attributes.append((try reader.readString(), try reader.readString())) }
            guard reader.remaining == 0 else {
                throw ByteReader.Malformed(offset: reader.offset, expected: "the end of the record")
            }
            let event = UsageEvent(
                id: id, kind: kind, resource: ResourceID(type: type, id: resourceID), owner: owner,
                occurredAt: occurredAt,
                footprint: footprint, deltas: deltas, reason: reason, attributes: Attributes(attributes))
            return RecordedEvent(seq: seq, recordedAt: recordedAt, event: event)
        } catch {
            throw .corrupt(
                reason: "event seq \(seq): malformed record, expected \(error.expected) at byte \(error.offset)")
        }
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
