import CLMDB
#if canImport(Glibc)
import Glibc
#endif

/// A named database (LMDB's `MDB_dbi`) inside an environment. Cheap to copy; valid while the
/// environment is open.
public struct Database: Sendable, Hashable {
    /// The database's name.
    public let name: String
    let dbi: MDB_dbi
}

/// Anything that can be used as a key or value: it lends out its bytes for the duration of a call.
public protocol StorageBytes {
    /// Calls `body` with this value's bytes.
    func withStorageBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R
}

extension Array: StorageBytes where Element == UInt8 {
    public func withStorageBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeBytes(body)
    }
}

extension String: StorageBytes {
    public func withStorageBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        var copy = self
        return copy.withUTF8 { body(UnsafeRawBufferPointer($0)) }
    }
}

/// A 64-bit unsigned integer stored big-endian, so that byte order is numeric order (sequence keys).
public struct BigEndianKey: StorageBytes, Sendable, Hashable {
    /// The number.
    public var value: UInt64
    /// Wraps a number.
    public init(_ value: UInt64) { self.value = value }
    public func withStorageBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeBytes(of: value.bigEndian, body)
    }
    /// Reads a key of exactly 8 bytes.
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 8 else { return nil }
        value = UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self))
    }
}

@inline(__always)
func mdbVal(_ bytes: UnsafeRawBufferPointer) -> MDB_val {
    MDB_val(mv_size: bytes.count, mv_data: UnsafeMutableRawPointer(mutating: bytes.baseAddress))
}

@inline(__always)
func buffer(_ val: MDB_val) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: val.mv_data, count: val.mv_size)
}

/// Operations every transaction offers. The buffers returned point into the memory map and stay valid
/// only until the transaction ends; copy what must outlive it.
public protocol ReadableTransaction: ~Copyable {
    /// The LMDB transaction handle.
    var handle: OpaquePointer { get }
    /// Shared state with the environment's retry loop.
    var state: TransactionState { get }
}

extension ReadableTransaction where Self: ~Copyable {
    /// Opens a named database, creating it when `create` is set (write transactions only).
    public func openDatabase(_ name: String, create: Bool) throws(StorageError) -> Database {
        var dbi: MDB_dbi = 0
        let rc = mdb_dbi_open(handle, name, create ? UInt32(MDB_CREATE) : 0, &dbi)
        if rc == MDB_NOTFOUND { throw .databaseMissing(name) }
        try check(rc)
        return Database(name: name, dbi: dbi)
    }

    /// The value stored under `key`, or nil.
    public func get(_ db: Database, _ key: some StorageBytes) throws(StorageError) -> UnsafeRawBufferPointer? {
        var value = MDB_val()
        let rc = key.withStorageBytes { bytes in
            var k = mdbVal(bytes)
            return mdb_get(handle, db.dbi, &k, &value)
        }
        if rc == MDB_NOTFOUND { return nil }
        try check(rc)
        return buffer(value)
    }

    /// A cursor over `db`, closed when it goes out of scope.
    public func cursor(_ db: Database) throws(StorageError) -> Cursor {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, db.dbi, &cursor))
        guard let cursor else { throw .lmdb(code: -1, reason: "mdb_cursor_open returned no cursor") }
        return Cursor(handle: cursor, state: state)
    }

    /// Entry count, depth and size of `db`.
    public func statistics(_ db: Database) throws(StorageError) -> DatabaseStatistics {
        var stat = MDB_stat()
        try check(mdb_stat(handle, db.dbi, &stat))
        let pages = stat.ms_branch_pages + stat.ms_leaf_pages + stat.ms_overflow_pages
        return DatabaseStatistics(entries: stat.ms_entries, depth: Int(stat.ms_depth), bytes: pages * Int(stat.ms_psize))
    }
}

/// A read-only transaction: one consistent snapshot. It exists only inside `Environment.read`.
public struct ReadTransaction: ReadableTransaction, ~Copyable {
    public let handle: OpaquePointer
    public let state: TransactionState
}

/// How `WriteTransaction.put` treats an existing key.
public enum PutMode: Sendable {
    /// Replace any existing value.
    case upsert
    /// Fail with `false` if the key exists.
    case insertOnly
    /// The key must sort after every existing key (`MDB_APPEND`): fast tail insertion.
    case append
}

/// A read-write transaction. It exists only inside `Environment.write`, which commits it when the
/// closure returns.
public struct WriteTransaction: ReadableTransaction, ~Copyable {
    public let handle: OpaquePointer
    public let state: TransactionState

    @inline(__always)
    private func checkWrite(_ rc: Int32) throws(StorageError) {
        if rc == MDB_MAP_FULL { state.mapFull = true }
        try check(rc)
    }

    /// Stores `value` under `key`. Returns false when the mode forbids the write because the key exists
    /// (`insertOnly`) or does not sort last (`append`).
    @discardableResult
    public func put(_ db: Database, _ key: some StorageBytes, _ value: some StorageBytes, mode: PutMode = .upsert) throws(StorageError) -> Bool {
        let flags: UInt32
        switch mode {
        case .upsert: flags = 0
        case .insertOnly: flags = UInt32(MDB_NOOVERWRITE)
        case .append: flags = UInt32(MDB_APPEND)
        }
        let rc = key.withStorageBytes { keyBytes in
            value.withStorageBytes { valueBytes in
                var k = mdbVal(keyBytes)
                var v = mdbVal(valueBytes)
                return mdb_put(handle, db.dbi, &k, &v, flags)
            }
        }
        if rc == MDB_KEYEXIST { return false }
        try checkWrite(rc)
        return true
    }

    /// Deletes `key`; returns whether it existed.
    @discardableResult
    public func delete(_ db: Database, _ key: some StorageBytes) throws(StorageError) -> Bool {
        let rc = key.withStorageBytes { bytes in
            var k = mdbVal(bytes)
            return mdb_del(handle, db.dbi, &k, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        try checkWrite(rc)
        return true
    }

    /// Deletes every entry of `db`, keeping the database.
    public func clear(_ db: Database) throws(StorageError) {
        try checkWrite(mdb_drop(handle, db.dbi, 0))
    }
}

/// One key/value pair seen through a cursor; both buffers point into the map.
public struct CursorEntry {
    /// The key's bytes.
    public let key: UnsafeRawBufferPointer
    /// The value's bytes.
    public let value: UnsafeRawBufferPointer
}

/// A position in a database, moved with `first`, `last`, `seek`, `next` and `previous`. It is closed
/// when it goes out of scope, which is always before its transaction ends.
public struct Cursor: ~Copyable {
    let handle: OpaquePointer
    let state: TransactionState

    deinit { mdb_cursor_close(handle) }

    private func move(_ op: MDB_cursor_op, key: UnsafeRawBufferPointer? = nil) throws(StorageError) -> CursorEntry? {
        var k = key.map(mdbVal) ?? MDB_val()
        var v = MDB_val()
        let rc = mdb_cursor_get(handle, &k, &v, op)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc)
        return CursorEntry(key: buffer(k), value: buffer(v))
    }

    /// The first entry.
    public func first() throws(StorageError) -> CursorEntry? { try move(MDB_FIRST) }
    /// The last entry.
    public func last() throws(StorageError) -> CursorEntry? { try move(MDB_LAST) }
    /// The next entry.
    public func next() throws(StorageError) -> CursorEntry? { try move(MDB_NEXT) }
    /// The previous entry.
    public func previous() throws(StorageError) -> CursorEntry? { try move(MDB_PREV) }
    /// The first entry whose key is greater than or equal to `key`.
    public func seek(atLeast key: some StorageBytes) throws(StorageError) -> CursorEntry? {
        let rc: Result<CursorEntry?, StorageError> = key.withStorageBytes { bytes in
            do throws(StorageError) { return .success(try move(MDB_SET_RANGE, key: bytes)) }
            catch { return .failure(error) }
        }
        return try rc.get()
    }

    /// Deletes the entry at the cursor (write transactions only).
    public func deleteCurrent() throws(StorageError) {
        let rc = mdb_cursor_del(handle, 0)
        if rc == MDB_MAP_FULL { state.mapFull = true }
        try check(rc)
    }
}

extension UnsafeRawBufferPointer {
    /// Whether these bytes begin with `prefix`.
    public func hasPrefix(_ prefix: UnsafeRawBufferPointer) -> Bool {
        guard count >= prefix.count else { return false }
        guard let mine = baseAddress, let theirs = prefix.baseAddress else { return prefix.isEmpty }
        return memcmp(mine, theirs, prefix.count) == 0
    }
}
