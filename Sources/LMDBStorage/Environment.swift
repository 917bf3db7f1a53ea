import CLMDB

#if canImport(Glibc)
import Glibc
#endif

/// How much a commit waits for the disk, and so what a power failure (not a process crash: LMDB never
/// loses a committed transaction to a crash of the process) can take away.
public enum Durability: String, Sendable, CaseIterable {
    /// fsync data and meta page on every commit: a commit that returned survives power loss.
    case full
    /// fsync data but not the meta page (`MDB_NOMETASYNC`): power loss may undo the last committed
    /// transaction(s), never leave a torn one.
    case noMetaSync
    /// No fsync at all (`MDB_NOSYNC`): power loss may undo every transaction since the OS last flushed;
    /// the file stays consistent on file systems that keep write order, otherwise may be corrupt.
    case noSync

    /// The environment flags that give this durability.
    var flags: UInt32 {
        switch self {
        case .full: return 0
        case .noMetaSync: return UInt32(MDB_NOMETASYNC)
        case .noSync: return UInt32(MDB_NOSYNC)
        }
    }
}

/// How to open an LMDB environment.
public struct EnvironmentOptions: Sendable {
    /// The map size to start with; it grows (doubling) on demand up to `maximumMapSize`.
    public var initialMapSize: Int = 64 << 20
    /// The largest the map, and so the data file, may grow.
    public var maximumMapSize: Int = 1 << 40
    /// The number of named databases the environment may hold.
    public var maximumDatabases: UInt32 = 32
    /// The number of reader slots, shared by all processes that open the environment.
    public var maximumReaders: UInt32 = 126
    /// What a commit waits for unless a write asks for another; see `Durability`.
    public var durability: Durability = .full
    /// Opens without the right to write (`MDB_RDONLY`).
    public var readOnly = false
    /// Creates the directory when it is missing.
    public var createIfMissing = true

    /// The default options: a 64 MiB map growing to 1 TiB, full durability.
    public init() {}
}

/// Statistics of one named database.
public struct DatabaseStatistics: Sendable, Equatable {
    /// Number of key/value pairs.
    public var entries: Int
    /// Height of the B-tree.
    public var depth: Int
    /// Bytes in branch, leaf and overflow pages.
    public var bytes: Int
}

/// Statistics of the whole environment.
public struct EnvironmentStatistics: Sendable, Equatable {
    /// The current map size in bytes.
    public var mapSize: Int
    /// Bytes of the map in use (last used page plus one, times the page size).
    public var usedBytes: Int
    /// The map size at which growth stops.
    public var maximumMapSize: Int
    /// Reader slots configured.
    public var maximumReaders: Int
    /// Reader slots used now, by any process.
    public var readersInUse: Int
    /// The page size.
    public var pageSize: Int
}

/// An open LMDB environment: one directory holding `data.mdb` and `lock.mdb`.
///
/// Open one `Environment` per path and process (LMDB drops its locks when any handle to the same file
/// closes); `UsageLedger` keeps a registry for that. Transactions are scoped closures; the map grows on
/// `MDB_MAP_FULL` by aborting, growing and running the write closure again, so a write closure must have
/// no effects outside LMDB. A transaction begun on a thread that already has a write transaction of this
/// environment open (or a write begun inside a read) fails with `StorageError.nestedTransaction`: LMDB
/// would deadlock on its own writer lock, or on the map resize.
public final class Environment: @unchecked Sendable {
    // @unchecked: `handle` is used only through LMDB calls that are thread-safe with MDB_NOTLS, resizing
    // is serialized against every transaction of this process by `gate`, and the durability flags are
    // changed only by the thread that holds LMDB's writer lock.
    let handle: OpaquePointer
    /// The directory of the environment.
    public let path: String
    /// The options it was opened with.
    public let options: EnvironmentOptions
    let gate = ReadWriteGate()
    /// What this thread has open in this environment (see `ThreadTransactions`).
    let threadTransactions = ThreadTransactions()
    /// The last snapshot `checkStructure()` walked, and what it found: a second check of the same
    /// snapshot (opening with the check, then `verify`) need not read the whole file again.
    let checkedSnapshot = Locked<(id: UInt64, report: StructureReport)?>(nil)

    /// Opens (and, unless read-only, creates) the environment at `path`, a directory. Files are created
    /// with mode 0600, the directory with 0700. Reader slots left by dead processes are cleared.
    public init(path: String, options: EnvironmentOptions = .init()) throws(StorageError) {
        self.path = path
        self.options = options
        try Self.prepareDirectory(path, options: options)
        try PageWalker.checkMetaPages(path: path + "/data.mdb")
        var env: OpaquePointer?
        try check(mdb_env_create(&env))
        guard let env else { throw .lmdb(code: ENOMEM) }
        var flags = UInt32(MDB_NOTLS) | options.durability.flags
        if options.readOnly { flags |= UInt32(MDB_RDONLY) }
        var rc = mdb_env_set_maxdbs(env, MDB_dbi(options.maximumDatabases))
        if rc == 0 { rc = mdb_env_set_maxreaders(env, options.maximumReaders) }
        if rc == 0 { rc = mdb_env_set_mapsize(env, min(options.initialMapSize, options.maximumMapSize)) }
        if rc == 0 { rc = mdb_env_open(env, path, flags, 0o600) }
        if rc != 0 {
            mdb_env_close(env)
            if rc > 0 {
                let reason =
                    rc == EACCES || rc == EROFS
                    ? Self.explainRefusal(path: path, code: rc) : StorageError.describe(rc)
                throw .cannotOpen(path: path, errno: rc, reason: reason)
            }
            if rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH {
                // The file is there and readable, but it is not (this version's) LMDB: damage, not access.
                throw .corrupted(
                    code: rc, detail: "'\(path)/data.mdb' is not an LMDB data file (\(StorageError.describe(rc)))")
            }
            throw StorageError.from(code: rc)
        }
        handle = env
        var dead: Int32 = 0
        mdb_reader_check(env, &dead)
    }

    deinit { mdb_env_close(handle) }

    /// Checks that `path` is a directory, creating it when allowed.
    private static func prepareDirectory(_ path: String, options: EnvironmentOptions) throws(StorageError) {
        var isDirectory = false
        guard exists(path, isDirectory: &isDirectory) else {
            guard options.createIfMissing, !options.readOnly else {
                throw .cannotOpen(path: path, errno: ENOENT, reason: "no ledger exists at this path")
            }
            if mkdir(path, 0o700) != 0 && errno != EEXIST {
                let code = errno
                throw .cannotOpen(path: path, errno: code, reason: String(cString: strerror(code)))
            }
            return
        }
        guard isDirectory else {
            throw .cannotOpen(path: path, errno: ENOTDIR, reason: "the path is a file; a ledger is a directory")
        }
    }

    /// Whether this process may open the environment at `path` for writing: its directory and any
    /// `data.mdb` and `lock.mdb` in it are writable. A reader uses this to share a writable environment.
    public static func isWritable(path: String) -> Bool {
        unwritableFiles(path).isEmpty && access("\(path)/data.mdb", F_OK) == 0
    }

    /// The directory, `lock.mdb` and `data.mdb` of `path` that exist and this user cannot write.
    private static func unwritableFiles(_ path: String) -> [String] {
        [path, "\(path)/lock.mdb", "\(path)/data.mdb"].filter { access($0, F_OK) == 0 && access($0, W_OK) != 0 }
    }

    /// Says which file LMDB could not open for writing: readers too register in `lock.mdb`, so a ledger
    /// on a read-only medium or with a read-only lock file cannot be opened even to read.
    private static func explainRefusal(path: String, code: Int32) -> String {
        if code == EROFS {
            return "the file system is read-only, and LMDB writes lock.mdb even to read "
                + "(copy the ledger somewhere writable)"
        }
        let refused = unwritableFiles(path)
        let names = refused.isEmpty ? "a file in it" : refused.map { "'\($0)'" }.joined(separator: ", ")
        let verb = refused.count > 1 ? "are" : "is"
        return "permission denied: \(names) \(verb) not writable by this user; "
            + "readers need to write lock.mdb, writers also data.mdb"
    }

    private static func exists(_ path: String, isDirectory: inout Bool) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
        return true
    }

    // MARK: - Tables

    /// Opens the named tables, creating those that are missing when `creating` and the environment is not
    /// read-only, and returns their identities by name. Missing one without creating throws
    /// `tableMissing`; a read-only user of a writable environment passes `creating: false`, so that
    /// opening writes nothing.
    public func openTables(_ names: [String], creating: Bool = true) throws(StorageError) -> [String: TableID] {
        if creating, !options.readOnly {
            let create = { (txn: borrowing WriteTransaction) throws(StorageError) -> [String: TableID] in
                var opened: [String: TableID] = [:]
                for name in names { opened[name] = try txn.createTable(name) }
                return opened
            }
            do { return try write(create) } catch {
                switch error {
                case .storage(let failure), .body(let failure): throw failure
                }
            }
        }
        // Handles opened in a read-only transaction survive only if it commits (an abort closes them).
        let txn = try begin(flags: UInt32(MDB_RDONLY))
        defer { end() }
        let core = TransactionCore(handle: txn)
        var opened: [String: TableID] = [:]
        do {
            for name in names { opened[name] = try core.openTable(name, create: false) }
        } catch {
            mdb_txn_abort(txn)
            throw error
        }
        try check(mdb_txn_commit(txn))  // frees the transaction, success or not
        return opened
    }

    // MARK: - Transactions

    /// Runs `body` in a read-only transaction that sees one consistent snapshot.
    ///
    /// - Throws: `TransactionError.storage` when the transaction cannot begin, `.body` with what `body` threw.
    public func read<R, Failure: Error>(
        _ body: (borrowing ReadTransaction) throws(Failure) -> R
    ) throws(TransactionError<Failure>) -> R {
        let txn: OpaquePointer
        do { txn = try begin(flags: UInt32(MDB_RDONLY)) } catch { throw .storage(error) }
        defer {
            mdb_txn_abort(txn)
            end()
        }
        do { return try body(ReadTransaction(core: TransactionCore(handle: txn))) } catch { throw .body(error) }
    }

    /// Runs `body` in a write transaction and commits it, with `durability`, when `body` returns; aborts it
    /// when `body` throws. On `MDB_MAP_FULL` the transaction is aborted, the map grown (up to
    /// `maximumMapSize`, or the environment's maximum) and `body` run again: `body` must have no effects
    /// outside the transaction, and its result is the run that committed.
    ///
    /// - Throws: `TransactionError.storage` when the environment fails (begin, growth, commit, or a nested
    ///   transaction), `.body` with what `body` threw (nothing of the transaction is then written).
    public func write<R, Failure: Error>(
        durability: Durability? = nil, maximumMapSize: Int? = nil,
        _ body: (borrowing WriteTransaction) throws(Failure) -> R
    ) throws(TransactionError<Failure>) -> R {
        let limit = min(maximumMapSize ?? options.maximumMapSize, options.maximumMapSize)
        while true {
            let txn: OpaquePointer
            do { txn = try begin(flags: 0) } catch { throw .storage(error) }
            let core = TransactionCore(handle: txn)
            let result: Result<R, Failure>
            do throws(Failure) {
                result = .success(try body(WriteTransaction(core: core)))
            } catch {
                result = .failure(error)
            }
            switch result {
            case .success(let value) where !core.mapFull:
                mdb_env_set_flags(handle, UInt32(MDB_NOSYNC | MDB_NOMETASYNC), 0)
                mdb_env_set_flags(handle, (durability ?? options.durability).flags, 1)
                let commit = mdb_txn_commit(txn)  // frees the transaction, success or not
                end()
                if commit == 0 { return value }
                if commit != MDB_MAP_FULL { throw .storage(StorageError.from(code: commit)) }
            case .failure(let error) where !core.mapFull:
                mdb_txn_abort(txn)
                end()
                throw .body(error)
            default:
                mdb_txn_abort(txn)
                end()
            }
            do { try growMap(limit: limit) } catch { throw .storage(error) }
        }
    }

    /// Begins a transaction holding the gate shared; the caller ends both (`end()`). Adopts a map another
    /// process grew (`MDB_MAP_RESIZED`) and clears stale readers when slots run out, then tries again.
    func begin(flags: UInt32) throws(StorageError) -> OpaquePointer {
        let isWrite = flags & UInt32(MDB_RDONLY) == 0
        try threadTransactions.enter(writing: isWrite)
        var clearedReaders = false
        while true {
            gate.lockShared()
            var txn: OpaquePointer?
            let rc = mdb_txn_begin(handle, nil, flags, &txn)
            if rc == 0, let txn { return txn }
            gate.unlock()
            switch rc {
            case MDB_MAP_RESIZED:
                adoptResizedMap()
            case MDB_READERS_FULL where !clearedReaders:
                clearedReaders = true
                clearStaleReaders()
            default:
                threadTransactions.leave()
                throw StorageError.from(code: rc)
            }
        }
    }

    /// Ends what `begin` started, after the LMDB transaction was committed or aborted.
    func end() {
        gate.unlock()
        threadTransactions.leave()
    }

    /// Grows the map by doubling, up to `limit`.
    private func growMap(limit: Int) throws(StorageError) {
        gate.lockExclusive()
        defer { gate.unlock() }
        let current = currentMapSize()
        guard current < limit else { throw .mapFull(maximumBytes: limit) }
        let next = min(max(current * 2, current + (1 << 20)), limit)
        try check(mdb_env_set_mapsize(handle, next))
    }

    /// Whether the calling thread has a transaction of this environment open: a write it begins now, or
    /// waits for, would fail with `nestedTransaction` or wait for itself.
    public var hasTransactionOnCurrentThread: Bool { !threadTransactions.isIdle }

    /// Grows the map to at least `bytes` (up to the maximum) now, so that a later open that asks for a
    /// bigger initial map than the first one gets it.
    /// On a thread that has a transaction of this environment open it does nothing (resizing waits for
    /// every transaction of the process to end): the map then grows on demand.
    public func reserveMapSize(_ bytes: Int) throws(StorageError) {
        let wanted = min(bytes, options.maximumMapSize)
        guard wanted > currentMapSize(), threadTransactions.isIdle else { return }
        gate.lockExclusive()
        defer { gate.unlock() }
        guard wanted > currentMapSize() else { return }
        try check(mdb_env_set_mapsize(handle, wanted))
    }

    /// Another process grew the map: take its size (a size of 0 means "adopt the current one").
    private func adoptResizedMap() {
        gate.lockExclusive()
        defer { gate.unlock() }
        mdb_env_set_mapsize(handle, 0)
    }

    private func currentMapSize() -> Int {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        return info.me_mapsize
    }

    // MARK: - Facts and maintenance

    /// The map size, use, and reader slots.
    public func statistics() -> EnvironmentStatistics {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        mdb_env_info(handle, &info)
        mdb_env_stat(handle, &stat)
        let pageSize = Int(stat.ms_psize)
        return EnvironmentStatistics(
            mapSize: info.me_mapsize,
            usedBytes: (info.me_last_pgno + 1) * pageSize,
            maximumMapSize: options.maximumMapSize,
            maximumReaders: Int(info.me_maxreaders),
            readersInUse: Int(info.me_numreaders),
            pageSize: pageSize)
    }

    /// Clears reader slots of processes that died holding a read transaction; returns how many.
    @discardableResult
    public func clearStaleReaders() -> Int {
        var dead: Int32 = 0
        mdb_reader_check(handle, &dead)
        return Int(dead)
    }

    /// Forces a flush to disk; useful after writes with `noSync` or `noMetaSync`.
    public func sync() throws(StorageError) {
        try check(mdb_env_sync(handle, 1))
    }

    /// Writes a consistent copy of the environment as the new file `file` (mode 0600; it must not exist),
    /// compacting free pages away when asked, and flushes it to disk before returning. Writers may continue
    /// meanwhile. A failed copy removes the partial file.
    public func copy(toFile file: String, compacting: Bool) throws(StorageError) {
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            throw .cannotOpen(path: file, errno: code, reason: String(cString: strerror(code)))
        }
        var rc = mdb_env_copyfd2(handle, fd, compacting ? UInt32(MDB_CP_COMPACT) : 0)
        // LMDB's own copy does not flush: a backup that a crash can take back is not one.
        if rc == MDB_SUCCESS && fsync(fd) != 0 { rc = errno }
        if close(fd) != 0 && rc == MDB_SUCCESS { rc = errno }
        if rc != MDB_SUCCESS {
            unlink(file)
            throw rc > 0 ? .cannotOpen(path: file, errno: rc, reason: StorageError.describe(rc)) : .from(code: rc)
        }
    }
}

/// Which transactions of one environment the current thread has open, in a thread-specific slot: a write
/// begun while the thread has any transaction of the environment open would deadlock (LMDB's writer lock
/// is not reentrant, and growing the map waits for every transaction of the process to end), so it is
/// refused with `nestedTransaction`. Reads may nest in reads and in a write.
final class ThreadTransactions: @unchecked Sendable {
    // @unchecked: the key is created once and only read after; each thread touches its own slot.
    private var key = pthread_key_t()
    private static let writing = 1 << 32

    init() { pthread_key_create(&key, nil) }

    deinit { pthread_key_delete(key) }

    private var current: Int {
        get { Int(bitPattern: pthread_getspecific(key)) }
        set { pthread_setspecific(key, UnsafeRawPointer(bitPattern: newValue)) }
    }

    /// Records a transaction begun on this thread, or refuses it.
    func enter(writing isWrite: Bool) throws(StorageError) {
        let open = current
        if isWrite {
            guard open == 0 else { throw .nestedTransaction }
            current = Self.writing | 1
        } else {
            current = open + 1
        }
    }

    /// Whether this thread has no transaction of the environment open.
    var isIdle: Bool { current == 0 }

    /// Records that this thread's innermost transaction ended.
    func leave() {
        let remaining = current - 1
        current = remaining & (Self.writing - 1) == 0 ? 0 : remaining
    }
}

/// A process-wide reader/writer lock: transactions hold it shared, a map resize holds it exclusively
/// (LMDB requires that no transaction of this process is active during `mdb_env_set_mapsize`).
final class ReadWriteGate: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func lockShared() { pthread_rwlock_rdlock(lock) }
    func lockExclusive() { pthread_rwlock_wrlock(lock) }
    func unlock() { pthread_rwlock_unlock(lock) }
}
