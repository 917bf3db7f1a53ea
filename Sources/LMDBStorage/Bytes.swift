/// A growable byte buffer for encoding keys and records: big-endian integers for keys (so byte order is
/// numeric order), LEB128 varints and length-prefixed strings for compact records.
public struct ByteWriter: Sendable {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8]

    /// Creates an empty writer with room for `capacity` bytes.
    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Appends one byte.
    @inline(__always) public mutating func write(_ byte: UInt8) { bytes.append(byte) }

    /// Appends raw bytes.
    @inline(__always) public mutating func write<S: Sequence>(contentsOf other: S) where S.Element == UInt8 {
        bytes.append(contentsOf: other)
    }

    /// Appends a 64-bit unsigned integer in big-endian order.
    @inline(__always) public mutating func writeBigEndian(_ value: UInt64) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// Appends a 32-bit unsigned integer in big-endian order.
    @inline(__always) public mutating func writeBigEndian(_ value: UInt32) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// Appends a signed 64-bit integer so that byte order equals numeric order (sign bit flipped).
    @inline(__always) public mutating func writeOrdered(_ value: Int64) {
        writeBigEndian(UInt64(bitPattern: value) ^ (1 << 63))
    }

    /// Appends an unsigned LEB128 varint.
    @inline(__always) public mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Appends a signed integer as a zigzag varint.
    @inline(__always) public mutating func writeSignedVarint(_ value: Int64) {
        writeVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    /// Appends a varint length followed by the string's UTF-8 bytes.
    @inline(__always) public mutating func writeString(_ value: String) {
        var copy = value
        copy.withUTF8 { utf8 in
            writeVarint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }
}

/// Reads what `ByteWriter` wrote, with every read bounds-checked: a short or malformed buffer is reported
/// as `ByteReader.Malformed`, never read past.
public struct ByteReader {
    /// Thrown when the bytes end early or a varint is malformed.
    public struct Malformed: Error, Sendable {
        /// Where in the buffer the problem was found.
        public let offset: Int
        /// What was expected there.
        public let expected: String

        /// Describes a malformed buffer.
        public init(offset: Int, expected: String) {
            self.offset = offset
            self.expected = expected
        }
    }

    private let base: UnsafeRawBufferPointer
    /// The offset of the next byte to read.
    public private(set) var offset: Int = 0

    /// Reads `buffer`, which must stay valid while the reader is used (inside the transaction that
    /// produced it).
    public init(_ buffer: UnsafeRawBufferPointer) { base = buffer }

    /// The number of bytes not yet read.
    public var remaining: Int { base.count - offset }

    /// Reads one byte.
    public mutating func readByte() throws(Malformed) -> UInt8 {
        guard offset < base.count else { throw Malformed(offset: offset, expected: "a byte") }
        defer { offset += 1 }
        return base[offset]
    }

    /// Reads a big-endian 64-bit unsigned integer.
    public mutating func readBigEndianUInt64() throws(Malformed) -> UInt64 {
        guard remaining >= 8 else { throw Malformed(offset: offset, expected: "8 bytes") }
        defer { offset += 8 }
        return UInt64(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// Reads a big-endian 32-bit unsigned integer.
    public mutating func readBigEndianUInt32() throws(Malformed) -> UInt32 {
        guard remaining >= 4 else { throw Malformed(offset: offset, expected: "4 bytes") }
        defer { offset += 4 }
        return UInt32(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// Reads a signed integer written with `ByteWriter.writeOrdered`.
    public mutating func readOrderedInt64() throws(Malformed) -> Int64 {
        Int64(bitPattern: try readBigEndianUInt64() ^ (1 << 63))
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes.
    public mutating func readVarint() throws(Malformed) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try readByte()
            if shift == 63 && byte > 1 { throw Malformed(offset: offset - 1, expected: "a varint of 64 bits") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw Malformed(offset: offset, expected: "a varint of 64 bits") }
        }
    }

    /// Reads a zigzag varint.
    public mutating func readSignedVarint() throws(Malformed) -> Int64 {
        let raw = try readVarint()
        return Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1)
    }

    /// Reads a varint length and that many bytes as UTF-8 (invalid UTF-8 is malformed).
    public mutating func readString() throws(Malformed) -> String {
        let length = try readVarint()
        guard length <= UInt64(remaining) else { throw Malformed(offset: offset, expected: "\(length) string bytes") }
        let count = Int(length)
        let slice = UnsafeRawBufferPointer(rebasing: base[offset..<offset + count]).bindMemory(to: UInt8.self)
        // ASCII needs no further validation, and String's generic validation costs more than the rest of
        // decoding a record.
        var high: UInt8 = 0
        for byte in slice { high |= byte }
        let text: String
        if high < 0x80 {
            text = String(decoding: slice, as: UTF8.self)
        } else {
            guard let validated = String(validating: slice, as: UTF8.self) else {
                throw Malformed(offset: offset, expected: "valid UTF-8")
            }
            text = validated
        }
        offset += count
        return text
    }

    /// Moves past `count` bytes.
    public mutating func skip(_ count: Int) throws(Malformed) {
        guard count >= 0, count <= remaining else { throw Malformed(offset: offset, expected: "\(count) bytes") }
        offset += count
    }

    /// Reads `count` raw bytes.
    public mutating func readBytes(_ count: Int) throws(Malformed) -> [UInt8] {
        guard count >= 0, count <= remaining else { throw Malformed(offset: offset, expected: "\(count) bytes") }
        defer { offset += count }
        return Array(UnsafeRawBufferPointer(rebasing: base[offset..<offset + count]))
    }
}
