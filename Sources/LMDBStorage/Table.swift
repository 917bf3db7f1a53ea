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
}

/// A codec whose encoding is built as a byte array: it only needs `encode`.
public protocol ByteArrayCodec: StorageCodec {
    /// The bytes of `item`.
    static func encode(_ item: Item) -> [UInt8]
}

extension ByteArrayCodec {
    @inline(__always)
    public static func withEncoded<R>(_ item: Item, _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        try lendBytes(of: encode(item), body)
    }
}

/// Calls `body` with the bytes of `array`, keeping `body`'s typed error (`withUnsafeBytes` only rethrows).
@inline(__always)
public func lendBytes<R>(of array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
    throws(StorageError) -> R
{
    let result: Result<R, StorageError> = array.withUnsafeBytes { bytes in
        Result { () throws(StorageError) in try body(bytes) }
    }
    return try result.get()
}

/// The identity of an open table, without its types: what iterating a schema (clearing, statistics)
/// needs. Cheap to copy; valid while the environment is open.
public struct TableID: Sendable, Hashable {
    /// The table's name (LMDB's named database).
    public let name: String
    let dbi: MDB_dbi
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

/// A 64-bit unsigned integer stored big-endian, so that byte order is numeric order (sequence keys).
public enum BigEndianUInt64: StorageCodec {
    @inline(__always)
    public static func withEncoded<R>(_ item: UInt64, _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        try withUnsafeBytes(of: item.bigEndian) { (bytes) throws(StorageError) in try body(bytes) }
    }

    @inline(__always)
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> UInt64 {
        guard bytes.count == 8 else { throw .malformedRecord(table: "", reason: "not an 8-byte number") }
        return UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self))
    }
}

/// A 32-bit unsigned integer stored big-endian.
public enum BigEndianUInt32: StorageCodec {
    public static func withEncoded<R>(_ item: UInt32, _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        try withUnsafeBytes(of: item.bigEndian) { (bytes) throws(StorageError) in try body(bytes) }
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> UInt32 {
        guard bytes.count == 4 else { throw .malformedRecord(table: "", reason: "not a 4-byte number") }
        return UInt32(bigEndian: bytes.loadUnaligned(as: UInt32.self))
    }
}

/// A string stored as its UTF-8 bytes, without length or terminator (a whole key or value).
public enum UTF8Text: StorageCodec {
    public static func withEncoded<R>(_ item: String, _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        var copy = item
        let result: Result<R, StorageError> = copy.withUTF8 { utf8 in
            Result { () throws(StorageError) in try body(UnsafeRawBufferPointer(utf8)) }
        }
        return try result.get()
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> String {
        guard let text = String(validating: bytes.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw .malformedRecord(table: "", reason: "not valid UTF-8")
        }
        return text
    }
}

/// Bytes stored as they are.
public enum RawBytes: StorageCodec {
    public static func withEncoded<R>(_ item: [UInt8], _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        try lendBytes(of: item, body)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> [UInt8] { Array(bytes) }
}

/// A single byte.
public enum SingleByte: StorageCodec {
    public static func withEncoded<R>(_ item: UInt8, _ body: (UnsafeRawBufferPointer) throws(StorageError) -> R)
        throws(StorageError) -> R
    {
        try withUnsafeBytes(of: item) { (bytes) throws(StorageError) in try body(bytes) }
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> UInt8 {
        guard bytes.count == 1 else { throw .malformedRecord(table: "", reason: "not a single byte") }
        return bytes[0]
    }
}
