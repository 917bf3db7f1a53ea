import CLMDB
#if canImport(Glibc)
import Glibc
#endif

/// An error from the storage layer: an LMDB return code or an operating-system error, mapped to a case
/// a caller can switch on.
public enum StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The map reached the configured maximum size; nothing of the failed transaction was written.
    case mapFull(maximumBytes: Int)
    /// All reader slots are taken, even after stale readers were cleared.
    case readersFull
    /// The write transaction has too many dirty pages; split the work into smaller transactions.
    case transactionFull
    /// The file is not an LMDB environment, or its pages fail LMDB's own checks.
    case corrupted(String)
    /// The environment was written by an LMDB version with another on-disk layout.
    case versionMismatch
    /// A named database that should exist does not.
    case databaseMissing(String)
    /// The path cannot be opened: it is missing, not permitted, read-only or otherwise refused.
    case cannotOpen(path: String, errno: Int32, reason: String)
    /// Any other LMDB or system code, with LMDB's own text for it.
    case lmdb(code: Int32, reason: String)

    /// Maps an LMDB return code (never `MDB_SUCCESS`) to an error.
    static func from(code: Int32, maximumMapBytes: Int = 0) -> StorageError {
        switch code {
        case MDB_MAP_FULL: return .mapFull(maximumBytes: maximumMapBytes)
        case MDB_READERS_FULL: return .readersFull
        case MDB_TXN_FULL: return .transactionFull
        case MDB_CORRUPTED, MDB_PAGE_NOTFOUND, MDB_INVALID: return .corrupted(describe(code))
        case MDB_VERSION_MISMATCH: return .versionMismatch
        default: return .lmdb(code: code, reason: describe(code))
        }
    }

    /// LMDB's (or the C library's) text for a return code.
    static func describe(_ code: Int32) -> String {
        guard let text = mdb_strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }

    public var description: String {
        switch self {
        case .mapFull(let max): return "the ledger reached its maximum size of \(max) bytes"
        case .readersFull: return "all LMDB reader slots are in use"
        case .transactionFull: return "the write transaction is too large"
        case .corrupted(let why): return "the data file is corrupt: \(why)"
        case .versionMismatch: return "the data file was written by an incompatible LMDB version"
        case .databaseMissing(let name): return "the named database '\(name)' is missing"
        case .cannotOpen(let path, _, let reason): return "cannot open '\(path)': \(reason)"
        case .lmdb(let code, let reason): return "LMDB error \(code): \(reason)"
        }
    }
}

/// Throws the mapped error unless `code` is `MDB_SUCCESS`.
@inline(__always)
func check(_ code: Int32) throws(StorageError) {
    if code != MDB_SUCCESS { throw StorageError.from(code: code) }
}
