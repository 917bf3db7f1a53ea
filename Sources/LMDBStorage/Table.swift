import CLMDB

/// How one kind of key or value is stored: its encoding into bytes and its decoding, with every read
/// bounds-checked. A table is typed by a key codec and a value codec (in the spirit of heed's
/// `Database<KC, DC>`), so a table can only be given and give back the types it stores.
public protocol StorageCodec {
    /// The Swift value stored.
    associatedtype Item
    /// Calls `body` with the bytes of `item`.
    static func withEncoded<R>(_ item: Item, _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    /// Decodes bytes read from the map; malformed bytes throw `StorageError.malformedRecord`.
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> Item
    /// The bytes of `item`, owned (for a key encoded once and used several times).
    static func encodedBytes(_ item: Item) -> [UInt8]
}

extension StorageCodec {
    /// The bytes `withEncoded` lends, copied.
    @inlinable
    public static func encodedBytes(_ item: Item) -> [UInt8] {
        do { return try withEncoded(item) { (bytes) throws(StorageError) in Array(bytes) } } catch { return [] }
    }
}

/// A key encoded once by its codec, for several operations on one table (a read, then a write).
public struct EncodedKey<Codec: StorageCodec>: Sendable {
    /// The key's bytes.
    public let bytes: [UInt8]

    /// Encodes `key`.
    @inlinable
    public init(_ key: Codec.Item) { bytes = Codec.encodedBytes(key) }

    /// Wraps bytes that `Codec` encoded (package code that builds or reads keys as bytes on hot paths).
    @inlinable
    package init(encodedBytes: [UInt8]) { bytes = encodedBytes }
}

/// A codec whose encoding is built as a byte array: it only needs `encode`.
public protocol ByteArrayCodec: StorageCodec {
    /// The bytes of `item`.
    static func encode(_ item: Item) -> [UInt8]
}

extension ByteArrayCodec {
    @inlinable @inline(__always)
    public static func withEncoded<R>(_ item: Item, _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        try lendBytes(of: encode(item), body)
    }

    /// `encode(item)`: the array is the encoding.
    @inlinable
    public static func encodedBytes(_ item: Item) -> [UInt8] { encode(item) }
}

/// Calls `body` with the bytes of `array`, keeping `body`'s typed error (`withUnsafeBytes` only rethrows;
/// the cast costs nothing unless `body` throws).
@inlinable @inline(__always)
public func lendBytes<R>(of array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
    throws(StorageError) -> R
{
    do { return try array.withUnsafeBytes { bytes in try body(bytes) } } catch { throw storageError(error) }
}

/// An error a `StorageError`-throwing closure threw through a `rethrows` function.
@usableFromInline
func storageError(_ error: any Error) -> StorageError {
    error as? StorageError ?? .malformedRecord(table: "", reason: "unexpected error \(error)")
}

/// The identity of an open table, without its types: what iterating a schema (clearing, statistics)
/// needs. Cheap to copy; valid while the environment is open.
public struct TableID: Sendable, Hashable {
    /// The table's name (LMDB's named database).
    public let name: String
    @usableFromInline let dbi: MDB_dbi
}

/// A named table of `Key`s and `Value`s, each stored through its codec.
public struct Table<Key: StorageCodec, Value: StorageCodec>: Sendable, Hashable {
    /// The table's identity.
    public let id: TableID

    /// Types an opened table.
    public init(_ id: TableID) { self.id = id }

    /// The table's name.
    public var name: String { id.name }

    /// Types the table `name` from `opened` (as `Environment.openTables` returned them).
    public init(_ name: String, in opened: [String: TableID]) throws(StorageError) {
        guard let id = opened[name] else { throw .tableMissing(name) }
        self.id = id
    }
}

// MARK: - Codecs of plain values

/// An unsigned integer stored big-endian, so that byte order is numeric order (sequence keys).
public enum BigEndian<Integer: FixedWidthInteger & UnsignedInteger>: StorageCodec {
    @inlinable @inline(__always)
    public static func withEncoded<R>(_ item: Integer, _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        try withUnsafeBytes(of: item.bigEndian) { (bytes) throws(StorageError) in try body(bytes) }
    }

    @inlinable @inline(__always)
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> Integer {
        guard bytes.count == MemoryLayout<Integer>.size else {
            throw .malformedRecord(table: "", reason: "not a \(MemoryLayout<Integer>.size)-byte number")
        }
        return Integer(bigEndian: bytes.loadUnaligned(as: Integer.self))
    }
}

/// A 64-bit unsigned integer stored big-endian (sequence numbers, resource numbers).
public typealias BigEndianUInt64 = BigEndian<UInt64>
/// A 32-bit unsigned integer stored big-endian (the format version).
public typealias BigEndianUInt32 = BigEndian<UInt32>

/// A string stored as its UTF-8 bytes, without length or terminator (a whole key or value).
public enum UTF8Text: StorageCodec {
    @inlinable
    public static func withEncoded<R>(_ item: String, _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        var copy = item
        do { return try copy.withUTF8 { utf8 in try body(UnsafeRawBufferPointer(utf8)) } } catch {
            throw storageError(error)
        }
    }

    @inlinable
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> String {
        guard let text = String(validating: bytes.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw .malformedRecord(table: "", reason: "not valid UTF-8")
        }
        return text
    }
}

/// Bytes stored as they are.
public enum RawBytes: StorageCodec {
    @inlinable
    public static func withEncoded<R>(_ item: [UInt8], _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        try lendBytes(of: item, body)
    }

    @inlinable
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> [UInt8] { Array(bytes) }
}

/// A single byte.
public enum SingleByte: StorageCodec {
    @inlinable
    public static func withEncoded<R>(_ item: UInt8, _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        try withUnsafeBytes(of: item) { (bytes) throws(StorageError) in try body(bytes) }
    }

    @inlinable
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> UInt8 {
        guard bytes.count == 1 else { throw .malformedRecord(table: "", reason: "not a single byte") }
        return bytes[0]
    }
}
