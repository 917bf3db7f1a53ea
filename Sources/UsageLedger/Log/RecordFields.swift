import LMDBStorage
import LedgerCore

/// The field encodings shared by every stored record (events, states, rows, totals, bases, owner-hour
/// sums): each exists once, here.
enum RecordFields {
    /// Meters as `varint n, n × (str name, zigzag varint value)`, in the meters' (sorted) order.
    static func writeMeters(_ meters: Meters, into writer: inout ByteWriter) {
        writer.writeVarint(UInt64(meters.count))
        for (name, value) in meters {
            writer.writeString(name)
            writer.writeSignedVarint(value)
        }
    }

    /// Reads what `writeMeters` wrote.
    static func readMeters(_ reader: inout ByteReader) throws(ByteReader.Malformed) -> Meters {
        let count = try reader.readVarint()
        guard count <= UInt64(reader.remaining) else {
            throw ByteReader.Malformed(offset: reader.offset, expected: "meters")
        }
        var pairs: [(String, Int64)] = []
        pairs.reserveCapacity(Int(count))
        for _ in 0..<count { pairs.append((try reader.readString(), try reader.readSignedVarint())) }
        return Meters(pairs)
    }

    /// How a stored sum is written: 16 bytes big-endian (compaction bases, owner totals, format-4 rows) or
    /// its smallest exact encoding (`c128`: rows and owner sums from format 5).
    enum SumEncoding {
        case fixed16
        case compact

        func write(_ value: Int128, into writer: inout ByteWriter) {
            switch self {
            case .fixed16: RecordFields.writeSigned128(value, into: &writer)
            case .compact: RecordFields.writeCompact128(value, into: &writer)
            }
        }

        func read(_ reader: inout ByteReader) throws(ByteReader.Malformed) -> Int128 {
            switch self {
            case .fixed16: return try RecordFields.readSigned128(&reader)
            case .compact: return try RecordFields.readCompact128(&reader)
            }
        }
    }

    /// Named sums as `varint n, n × (str name, sum)`, names sorted.
    static func writeAmounts(
        _ amounts: [String: Int128], into writer: inout ByteWriter, as encoding: SumEncoding = .fixed16
    ) {
        writer.writeVarint(UInt64(amounts.count))
        for name in amounts.keys.sorted() {
            writer.writeString(name)
            encoding.write(amounts[name] ?? 0, into: &writer)
        }
    }

    /// Reads what `writeAmounts` wrote.
    static func readAmounts(_ reader: inout ByteReader, as encoding: SumEncoding = .fixed16)
        throws(ByteReader.Malformed) -> [String: Int128]
    {
        let count = try reader.readVarint()
        guard count <= UInt64(reader.remaining) else {
            throw ByteReader.Malformed(offset: reader.offset, expected: "amounts")
        }
        var amounts: [String: Int128] = [:]
        for _ in 0..<count { amounts[try reader.readString()] = try encoding.read(&reader) }
        return amounts
    }

    /// A signed 128-bit integer as 16 bytes, big-endian two's complement.
    static func writeSigned128(_ value: Int128, into writer: inout ByteWriter) {
        let bits = UInt128(bitPattern: value)
        writer.writeBigEndian(UInt64(truncatingIfNeeded: bits >> 64))
        writer.writeBigEndian(UInt64(truncatingIfNeeded: bits))
    }

    /// Reads what `writeSigned128` wrote.
    static func readSigned128(_ reader: inout ByteReader) throws(ByteReader.Malformed) -> Int128 {
        let high = try reader.readBigEndianUInt64(), low = try reader.readBigEndianUInt64()
        return Int128(bitPattern: UInt128(high) << 64 | UInt128(low))
    }

    /// A signed 128-bit integer in its smallest exact encoding: zigzag, then LEB128 (1 byte up to ±63, 5
    /// bytes for an hour of microseconds, 19 at most).
    static func writeCompact128(_ value: Int128, into writer: inout ByteWriter) {
        var bits = UInt128(bitPattern: (value << 1) ^ (value >> 127))
        while bits >= 0x80 {
            writer.write(UInt8(truncatingIfNeeded: bits) | 0x80)
            bits >>= 7
        }
        writer.write(UInt8(bits))
    }

    /// Reads what `writeCompact128` wrote; refuses an encoding longer than 128 bits.
    static func readCompact128(_ reader: inout ByteReader) throws(ByteReader.Malformed) -> Int128 {
        var bits: UInt128 = 0
        var shift: UInt128 = 0
        while true {
            let offset = reader.offset
            let byte = try reader.readByte()
            guard shift < 128, shift < 126 || byte & 0x7F <= 0x03 else {
                throw ByteReader.Malformed(offset: offset, expected: "a 128-bit varint")
            }
            bits |= UInt128(byte & 0x7F) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        return Int128(bitPattern: bits >> 1) ^ (0 - Int128(bitPattern: bits & 1))
    }
}
