import CLMDB

#if canImport(Glibc)
import Glibc
#endif

/// An error from the storage layer: an LMDB return code or an operating-system error, mapped to a case
/// a caller can switch on. Each case keeps the code it came from, so nothing is known only as text.
public enum StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The map reached the configured maximum size; nothing of the failed transaction was written.
    case mapFull(maximumBytes: Int)
    /// All reader slots are taken, even after stale readers were cleared (`MDB_READERS_FULL`).
    case readersFull
    /// The write transaction has too many dirty pages; split the work into smaller transactions.
    case transactionFull
    /// The file is not an LMDB environment, or its pages fail LMDB's own checks or the structure check.
    /// `code` is LMDB's (`MDB_CORRUPTED`, `MDB_PAGE_NOTFOUND`, `MDB_INVALID`), nil for the structure check.
    case corrupted(code: Int32?, detail: String)
    /// The environment was written by an LMDB version with another on-disk layout.
    case versionMismatch
    /// A named table that should exist does not.
    case tableMissing(String)
    /// A stored key or value does not decode with its table's codec.
    case malformedRecord(table: String, reason: String)
    /// A transaction was begun on a thread that already holds a write transaction of the environment,
    /// or a write inside a read: LMDB would deadlock on it.
    case nestedTransaction
    /// The path cannot be opened: it is missing, not permitted, read-only or otherwise refused.
    case cannotOpen(path: String, errno: Int32, reason: String)
    /// Any other LMDB or system code (LMDB returns `errno` values for system failures).
    case lmdb(code: Int32)

    /// Maps an LMDB return code (never `MDB_SUCCESS`) to an error.
    @usableFromInline
    static func from(code: Int32, maximumMapBytes: Int = 0) -> StorageError {
        switch code {
        case MDB_MAP_FULL: return .mapFull(maximumBytes: maximumMapBytes)
        case MDB_READERS_FULL: return .readersFull
        case MDB_TXN_FULL: return .transactionFull
        case MDB_CORRUPTED, MDB_PAGE_NOTFOUND, MDB_INVALID: return .corrupted(code: code, detail: describe(code))
        case MDB_VERSION_MISMATCH: return .versionMismatch
        default: return .lmdb(code: code)
        }
    }

    /// LMDB's (or the C library's) text for a return code.
    static func describe(_ code: Int32) -> String {
        guard let text = mdb_strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }

    /// The LMDB or `errno` code behind the error, when there is one.
    public var code: Int32? {
        switch self {
        case .mapFull: return MDB_MAP_FULL
        case .readersFull: return MDB_READERS_FULL
        case .transactionFull: return MDB_TXN_FULL
        case .corrupted(let code, _): return code
        case .versionMismatch: return MDB_VERSION_MISMATCH
        case .tableMissing: return MDB_NOTFOUND
        case .malformedRecord, .nestedTransaction: return nil
        case .cannotOpen(_, let errno, _): return errno
        case .lmdb(let code): return code
        }
    }

    public var description: String {
        switch self {
        case .mapFull(let max): return "the ledger reached its maximum size of \(max) bytes"
        case .readersFull: return "all LMDB reader slots are in use"
        case .transactionFull: return "the write transaction is too large"
        case .corrupted(_, let detail): return "the data file is corrupt: \(detail)"
        case .versionMismatch: return "the data file was written by an incompatible LMDB version"
        case .tableMissing(let name): return "the named database '\(name)' is missing"
        case .malformedRecord(let table, let reason): return "a record of '\(table)' is malformed: \(reason)"
        case .nestedTransaction:
            return "a transaction was begun on a thread that already has a write transaction of this ledger open "
                + "(or a write inside a read); LMDB would deadlock"
        case .cannotOpen(let path, _, let reason): return "cannot open '\(path)': \(reason)"
        case .lmdb(let code): return "LMDB error \(code): \(Self.describe(code))"
        }
    }
}

/// The failure of a transaction: the environment's own (it could not begin, grow or commit, or the
/// transaction was nested), or what the transaction's body threw. Either way nothing was written.
public enum TransactionError<Failure: Error>: Error {
    /// The environment failed; the body's effects, if it ran, were rolled back.
    case storage(StorageError)
    /// The body threw; the transaction was aborted.
    case body(Failure)
}

extension TransactionError: Sendable where Failure: Sendable {}

/// Throws the mapped error unless `code` is `MDB_SUCCESS`.
@inlinable @inline(__always)
func check(_ code: Int32) throws(StorageError) {
    if code != MDB_SUCCESS { throw StorageError.from(code: code) }
}
