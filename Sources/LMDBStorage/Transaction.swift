import CLMDB

#if canImport(Glibc)
import Glibc
#endif

/// What every copy of one transaction shares with the environment's retry loop: LMDB's handle (never
/// part of the public API) and whether an operation hit `MDB_MAP_FULL`.
public final class TransactionCore {
    @usableFromInline let handle: OpaquePointer
    /// Set when an operation hit `MDB_MAP_FULL`; the transaction is then unusable and will be retried.
    @usableFromInline var mapFull = false

    init(handle: OpaquePointer) { self.handle = handle }

    func openTable(_ name: String, create: Bool) throws(StorageError) -> TableID {
        var dbi: MDB_dbi = 0
        let rc = mdb_dbi_open(handle, name, create ? UInt32(MDB_CREATE) : 0, &dbi)
        if rc == MDB_NOTFOUND { throw .tableMissing(name) }
        if rc == MDB_MAP_FULL { mapFull = true }
        try check(rc)
        return TableID(name: name, dbi: dbi)
    }

    @inlinable @inline(__always)
    func checkWrite(_ rc: Int32) throws(StorageError) {
        if rc == MDB_MAP_FULL { mapFull = true }
        try check(rc)
    }
}

@inlinable @inline(__always)
func mdbVal(_ bytes: UnsafeRawBufferPointer) -> MDB_val {
    MDB_val(mv_size: bytes.count, mv_data: UnsafeMutableRawPointer(mutating: bytes.baseAddress))
}

@inlinable @inline(__always)
func buffer(_ val: MDB_val) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: val.mv_data, count: val.mv_size)
}

/// Decodes `bytes` with `codec`, naming `table` in the error.
@inlinable @inline(__always)
func decode<C: StorageCodec>(_ codec: C.Type, _ bytes: UnsafeRawBufferPointer, table: TableID) throws(StorageError)
    -> C.Item
{
    do { return try C.decode(bytes) } catch {
        if case .malformedRecord(_, let reason) = error { throw .malformedRecord(table: table.name, reason: reason) }
        throw error
    }
}

/// What every transaction can do: read. Values come back decoded by the table's codec; bytes read from
/// the map are lent only to package code, inside the transaction that read them.
public protocol ReadableTransaction: ~Copyable {
    /// The transaction's shared state (opaque outside the storage layer).
    var core: TransactionCore { get }
}

extension ReadableTransaction where Self: ~Copyable {
    /// The value stored under `key`, or nil.
    @inlinable
    public func get<K, V>(_ table: Table<K, V>, _ key: K.Item) throws(StorageError) -> V.Item? {
        guard let bytes = try rawGetEncoding(table.id, key: key, K.self) else { return nil }
        return try decode(V.self, bytes, table: table.id)
    }

    /// Whether `key` is stored.
    @inlinable
    public func contains<K, V>(_ table: Table<K, V>, _ key: K.Item) throws(StorageError) -> Bool {
        try rawGetEncoding(table.id, key: key, K.self) != nil
    }

    /// The bytes stored under `key`, valid until the transaction ends (package code only).
    @inlinable
    package func rawGet<K, V>(_ table: Table<K, V>, _ key: K.Item) throws(StorageError) -> UnsafeRawBufferPointer? {
        try rawGetEncoding(table.id, key: key, K.self)
    }

    /// The bytes stored under the key `keyBytes`, valid until the transaction ends (package code only).
    @inlinable
    package func rawGet(_ table: TableID, keyBytes: UnsafeRawBufferPointer) throws(StorageError)
        -> UnsafeRawBufferPointer?
    {
        var value = MDB_val()
        var k = mdbVal(keyBytes)
        let rc = mdb_get(core.handle, table.dbi, &k, &value)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc)
        return buffer(value)
    }

    @inlinable
    func rawGetEncoding<K: StorageCodec>(_ table: TableID, key: K.Item, _: K.Type) throws(StorageError)
        -> UnsafeRawBufferPointer?
    {
        try K.withEncoded(key) { (bytes) throws(StorageError) in try rawGet(table, keyBytes: bytes) }
    }

    /// The value stored under an encoded key, or nil.
    @inlinable
    public func get<K, V>(_ table: Table<K, V>, encoded key: EncodedKey<K>) throws(StorageError) -> V.Item? {
        let bytes = try lendBytes(of: key.bytes) { (keyBytes) throws(StorageError) in
            try rawGet(table.id, keyBytes: keyBytes)
        }
        guard let bytes else { return nil }
        return try decode(V.self, bytes, table: table.id)
    }

    /// A cursor over `table`, closed when it goes out of scope.
    public func cursor<K, V>(_ table: Table<K, V>) throws(StorageError) -> Cursor<K, V> {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(core.handle, table.id.dbi, &cursor))
        guard let cursor else { throw .lmdb(code: EINVAL) }
        return Cursor(handle: cursor, table: table.id, core: core)
    }

    /// Entry count, depth and size of a table.
    public func statistics(_ table: TableID) throws(StorageError) -> DatabaseStatistics {
        var stat = MDB_stat()
        try check(mdb_stat(core.handle, table.dbi, &stat))
        let pages = stat.ms_branch_pages + stat.ms_leaf_pages + stat.ms_overflow_pages
        return DatabaseStatistics(
            entries: stat.ms_entries, depth: Int(stat.ms_depth), bytes: pages * Int(stat.ms_psize))
    }

    /// The number of entries of a table.
    public func count(_ table: TableID) throws(StorageError) -> Int { try statistics(table).entries }

    /// The snapshot's transaction id: every commit, from any process, makes a new one.
    public var snapshotID: UInt64 { UInt64(mdb_txn_id(core.handle)) }
}

/// A read-only transaction: one consistent snapshot. It exists only inside `Environment.read`, and it
/// cannot write: `put`, `delete`, `clear` and cursor deletes are members of `WriteTransaction` only.
public struct ReadTransaction: ReadableTransaction, ~Copyable {
    public let core: TransactionCore
}

/// How `WriteTransaction.put` treats an existing key.
public enum PutMode: Sendable {
    /// Replace any existing value.
    case upsert
    /// Fail with `false` if the key exists.
    case insertOnly
    /// The key must sort after every existing key (`MDB_APPEND`): fast tail insertion.
    case append

    @inlinable var flags: UInt32 {
        switch self {
        case .upsert: return 0
        case .insertOnly: return UInt32(MDB_NOOVERWRITE)
        case .append: return UInt32(MDB_APPEND)
        }
    }
}

/// A read-write transaction. It exists only inside `Environment.write`, which commits it when the
/// closure returns.
public struct WriteTransaction: ReadableTransaction, ~Copyable {
    public let core: TransactionCore

    /// Opens the table `name`, creating it when missing.
    public func createTable(_ name: String) throws(StorageError) -> TableID {
        try core.openTable(name, create: true)
    }

    /// Stores `value` under `key`. Returns false when the mode forbids the write because the key exists
    /// (`insertOnly`) or does not sort last (`append`).
    @discardableResult
    @inlinable
    public func put<K, V>(_ table: Table<K, V>, _ key: K.Item, _ value: V.Item, mode: PutMode = .upsert)
        throws(StorageError) -> Bool
    {
        try K.withEncoded(key) { (keyBytes) throws(StorageError) in
            try V.withEncoded(value) { (valueBytes) throws(StorageError) in
                try rawPut(table.id, keyBytes: keyBytes, valueBytes: valueBytes, mode: mode)
            }
        }
    }

    /// Stores `value` under an encoded key.
    @inlinable @discardableResult
    public func put<K, V>(_ table: Table<K, V>, encoded key: EncodedKey<K>, _ value: V.Item, mode: PutMode = .upsert)
        throws(StorageError) -> Bool
    {
        try lendBytes(of: key.bytes) { (keyBytes) throws(StorageError) in
            try V.withEncoded(value) { (valueBytes) throws(StorageError) in
                try rawPut(table.id, keyBytes: keyBytes, valueBytes: valueBytes, mode: mode)
            }
        }
    }

    /// Deletes an encoded key; returns whether it existed.
    @inlinable @discardableResult
    public func delete<K, V>(_ table: Table<K, V>, encoded key: EncodedKey<K>) throws(StorageError) -> Bool {
        try lendBytes(of: key.bytes) { (keyBytes) throws(StorageError) in try rawDelete(table.id, keyBytes: keyBytes) }
    }

    /// Stores raw bytes (package code only: the schema's codecs build them).
    @discardableResult
    @inlinable
    package func rawPut(
        _ table: TableID, keyBytes: UnsafeRawBufferPointer, valueBytes: UnsafeRawBufferPointer,
        mode: PutMode = .upsert
    ) throws(StorageError) -> Bool {
        var k = mdbVal(keyBytes)
        var v = mdbVal(valueBytes)
        let rc = mdb_put(core.handle, table.dbi, &k, &v, mode.flags)
        if rc == MDB_KEYEXIST { return false }
        try core.checkWrite(rc)
        return true
    }

    /// Deletes `key`; returns whether it existed.
    @discardableResult
    @inlinable
    public func delete<K, V>(_ table: Table<K, V>, _ key: K.Item) throws(StorageError) -> Bool {
        try K.withEncoded(key) { (bytes) throws(StorageError) in
            var k = mdbVal(bytes)
            let rc = mdb_del(core.handle, table.id.dbi, &k, nil)
            if rc == MDB_NOTFOUND { return false }
            try core.checkWrite(rc)
            return true
        }
    }

    /// Deletes the key `keyBytes` (package code only); returns whether it existed.
    @discardableResult
    @inlinable
    package func rawDelete(_ table: TableID, keyBytes: UnsafeRawBufferPointer) throws(StorageError) -> Bool {
        var k = mdbVal(keyBytes)
        let rc = mdb_del(core.handle, table.dbi, &k, nil)
        if rc == MDB_NOTFOUND { return false }
        try core.checkWrite(rc)
        return true
    }

    /// Deletes every entry of a table, keeping the table.
    public func clear(_ table: TableID) throws(StorageError) {
        try core.checkWrite(mdb_drop(core.handle, table.dbi, 0))
    }

    /// Deletes a table and its name (its `TableID` is invalid afterwards).
    public func dropTable(_ table: TableID) throws(StorageError) {
        try core.checkWrite(mdb_drop(core.handle, table.dbi, 1))
    }

    /// A cursor over `table` that can also delete the entry it is on.
    public func writeCursor<K, V>(_ table: Table<K, V>) throws(StorageError) -> WriteCursor<K, V> {
        WriteCursor(reading: try cursor(table))
    }
}

/// One key/value pair seen through a cursor; both buffers point into the map and are valid until the
/// cursor moves or the transaction ends (package code only).
@usableFromInline package struct RawEntry {
    /// The key's bytes.
    @usableFromInline package let key: UnsafeRawBufferPointer
    /// The value's bytes.
    @usableFromInline package let value: UnsafeRawBufferPointer

    @inlinable package init(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        self.key = key
        self.value = value
    }
}

/// A position in a table, moved with `first`, `last`, `seek`, `next` and `previous`, which return the
/// entry decoded. It is closed when it goes out of scope, which is always before its transaction ends.
public struct Cursor<Key: StorageCodec, Value: StorageCodec>: ~Copyable {
    @usableFromInline let handle: OpaquePointer
    @usableFromInline let table: TableID
    @usableFromInline let core: TransactionCore

    deinit { mdb_cursor_close(handle) }

    @inlinable
    func move(_ op: MDB_cursor_op, key: UnsafeRawBufferPointer? = nil) throws(StorageError) -> RawEntry? {
        var k = key.map(mdbVal) ?? MDB_val()
        var v = MDB_val()
        let rc = mdb_cursor_get(handle, &k, &v, op)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc)
        return RawEntry(key: buffer(k), value: buffer(v))
    }

    @inlinable
    func decoded(_ entry: RawEntry?) throws(StorageError) -> (key: Key.Item, value: Value.Item)? {
        guard let entry else { return nil }
        return (try decode(Key.self, entry.key, table: table), try decode(Value.self, entry.value, table: table))
    }

    /// The first entry.
    @inlinable
    public func first() throws(StorageError) -> (key: Key.Item, value: Value.Item)? { try decoded(rawFirst()) }
    /// The last entry.
    @inlinable
    public func last() throws(StorageError) -> (key: Key.Item, value: Value.Item)? { try decoded(rawLast()) }
    /// The next entry.
    @inlinable
    public func next() throws(StorageError) -> (key: Key.Item, value: Value.Item)? { try decoded(rawNext()) }
    /// The previous entry.
    @inlinable
    public func previous() throws(StorageError) -> (key: Key.Item, value: Value.Item)? {
        try decoded(rawPrevious())
    }
    /// The first entry whose key is greater than or equal to `key`.
    @inlinable
    public func seek(atLeast key: Key.Item) throws(StorageError) -> (key: Key.Item, value: Value.Item)? {
        try decoded(rawSeek(atLeast: key))
    }

    /// The first entry, as bytes.
    @inlinable
    package func rawFirst() throws(StorageError) -> RawEntry? { try move(MDB_FIRST) }
    /// The last entry, as bytes.
    @inlinable
    package func rawLast() throws(StorageError) -> RawEntry? { try move(MDB_LAST) }
    /// The next entry, as bytes.
    @inlinable
    package func rawNext() throws(StorageError) -> RawEntry? { try move(MDB_NEXT) }
    /// The previous entry, as bytes.
    @inlinable
    package func rawPrevious() throws(StorageError) -> RawEntry? { try move(MDB_PREV) }
    /// The first entry whose key is at least `key`, as bytes.
    @inlinable
    package func rawSeek(atLeast key: Key.Item) throws(StorageError) -> RawEntry? {
        try Key.withEncoded(key) { (bytes) throws(StorageError) in try move(MDB_SET_RANGE, key: bytes) }
    }
    /// The first entry whose key bytes are at least `bytes` (a key prefix, say).
    @inlinable
    package func rawSeek(atLeastBytes bytes: UnsafeRawBufferPointer) throws(StorageError) -> RawEntry? {
        try move(MDB_SET_RANGE, key: bytes)
    }
    /// The first entry whose key bytes are at least `bytes`.
    @inlinable
    package func rawSeek(atLeastBytes bytes: [UInt8]) throws(StorageError) -> RawEntry? {
        try lendBytes(of: bytes) { (raw) throws(StorageError) in try move(MDB_SET_RANGE, key: raw) }
    }
    /// Decodes an entry's key with the table's key codec.
    @inlinable
    package func key(of entry: RawEntry) throws(StorageError) -> Key.Item {
        try decode(Key.self, entry.key, table: table)
    }
    /// Decodes an entry's value with the table's value codec.
    @inlinable
    package func value(of entry: RawEntry) throws(StorageError) -> Value.Item {
        try decode(Value.self, entry.value, table: table)
    }
}

/// A cursor of a write transaction: it reads like `Cursor` and can delete the entry it is on.
public struct WriteCursor<Key: StorageCodec, Value: StorageCodec>: ~Copyable {
    /// The reading cursor it moves with.
    public let reading: Cursor<Key, Value>

    /// Deletes the entry at the cursor.
    @inlinable
    public func deleteCurrent() throws(StorageError) {
        try reading.core.checkWrite(mdb_cursor_del(reading.handle, 0))
    }
}

extension UnsafeRawBufferPointer {
    /// Whether these bytes begin with `prefix`.
    @inlinable
    public func hasPrefix(_ prefix: UnsafeRawBufferPointer) -> Bool {
        guard count >= prefix.count else { return false }
        guard let mine = baseAddress, let theirs = prefix.baseAddress else { return prefix.isEmpty }
        return memcmp(mine, theirs, prefix.count) == 0
    }

    /// Whether these bytes begin with `prefix`.
    @inlinable
    public func hasPrefix(_ prefix: [UInt8]) -> Bool {
        prefix.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) -> Bool in hasPrefix(bytes) }
    }
}
