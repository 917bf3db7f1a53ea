import Logging
import LMDBStorage
import LedgerCore

/// An event-sourced usage ledger stored in LMDB: an append-only log of usage events, recorded exactly
/// once, readable as a feed (by `seq`) and per resource (in timeline order).
///
/// A `Ledger` is safe to share between threads, and several processes may open the same ledger at once
/// (LMDB serializes their writers and gives every reader a consistent snapshot).
///
/// ```swift
/// let ledger = try Ledger(path: "/var/lib/orchestrator/usage")
/// let receipt = try ledger.append(event)
/// let page = try ledger.events(after: 0, limit: 100)
/// ```
public final class Ledger: Sendable {
    /// The ledger's directory.
    public let path: String
    /// The options it was opened with.
    public let options: LedgerOptions
    /// The shared environment until `close()`; each call holds its own reference while it runs, so closing
    /// never pulls the environment from under a call in progress.
    private let environmentSlot: Locked<Environment?>
    let schema: Schema
    let metrics: LedgerMetrics
    /// Combines concurrent appends into one write transaction.
    let groupCommit = GroupCommit()
    /// The logger from the options.
    var logger: Logger { options.logger }

    /// Opens the ledger at `path` (a directory), creating it unless `options.createIfMissing` is off or
    /// the ledger is opened read-only.
    ///
    /// Several `Ledger`s of one path in one process share one LMDB environment, and each keeps its own
    /// options: a read-only one cannot write (`read_only`), each commits with its own durability and grows
    /// the map no further than its own `maximumMapSize`. Options that only the first open can set (reader
    /// slots) are refused when they differ (`option_conflict`).
    ///
    /// - Throws: `LedgerError.formatTooNew` for a ledger written by a newer format,
    ///   `LedgerError.cannotOpen` when the path cannot be opened or holds no ledger.
    public init(path: String, options: LedgerOptions = LedgerOptions()) throws(LedgerError) {
        self.path = path
        self.options = options
        metrics = LedgerMetrics(dimensions: options.metricsDimensions)
        let opened: (Environment, Schema)
        do {
            opened = try Self.open(path: path, options: options)
        } catch StorageError.tableMissing {
            throw Self.explainMissingTables(path: path, options: options)
        } catch let error as LedgerError {
            throw error
        } catch {
            throw Self.map(error, path: path)
        }
        environmentSlot = Locked(opened.0)
        schema = opened.1
        try checkFormat()
    }

    private static func open(path: String, options: LedgerOptions) throws -> (Environment, Schema) {
        let environment = try EnvironmentRegistry.shared.environment(path: path, options: options)
        if options.checksStructureAtOpen { _ = try environment.checkStructure() }
        // Read-only, nothing is created: an older ledger lacking a table is refused, not changed.
        let opened = try environment.openTables(Schema.declarations.map(\.name), creating: !options.readOnly)
        return (environment, try Schema(opened: opened))
    }

    /// A ledger of an older format lacks the tables added since; read-only, it cannot gain them.
    private static func explainMissingTables(path: String, options: LedgerOptions) -> LedgerError {
        if let environment = try? EnvironmentRegistry.shared.environment(path: path, options: options),
            let found = try? formatVersion(in: environment), found < StorageFormat.currentVersion
        {
            return .cannotOpen(path: path, reason: "on-disk format \(found) must be upgraded; open it once for writing")
        }
        return .cannotOpen(path: path, reason: "it holds no usage ledger (run 'usage-ledger init' first)")
    }

    /// Refuses ledgers of a newer format; stamps new ledgers with the current one.
    private func checkFormat() throws(LedgerError) {
        let found = try read { txn in try txn.get(Meta.formatVersion, in: schema.meta) }
        if let found {
            guard found <= StorageFormat.currentVersion else {
                throw .formatTooNew(found: found, supported: StorageFormat.currentVersion)
            }
            if found < StorageFormat.currentVersion {
                guard !options.readOnly else {
                    throw .cannotOpen(
                        path: path, reason: "on-disk format \(found) must be upgraded; open it once for writing")
                }
                try upgrade(from: found)
            }
            return
        }
        guard !options.readOnly else { throw .cannotOpen(path: path, reason: "it holds no usage ledger") }
        try stampFormat(StorageFormat.currentVersion, replacing: false)
    }

    /// The format version stamped in a ledger's `meta`, read without opening the other tables.
    private static func formatVersion(in environment: Environment) throws -> UInt32? {
        let opened = try environment.openTables([Schema.meta.name])
        let meta = try Table<UTF8Text, RawBytes>(Schema.meta.name, in: opened)
        return try environment.read { (txn) throws(StorageError) in try txn.get(Meta.formatVersion, in: meta) }
    }

    private func stampFormat(_ version: UInt32, replacing: Bool) throws(LedgerError) {
        let meta = schema.meta
        // A concurrent first open may have stamped it already: insert-only then leaves its stamp.
        _ = try write { txn in
            try txn.put(Meta.formatVersion, version, in: meta, mode: replacing ? .upsert : .insertOnly)
        }
    }

    /// The on-disk format version of this ledger.
    public static var formatVersion: UInt32 { StorageFormat.currentVersion }

    // MARK: - Transactions

    /// The environment, or `closed` once `close()` was called.
    var environment: Environment {
        get throws(LedgerError) {
            guard let environment = environmentSlot.withLock({ $0 }) else { throw .closed(path: path) }
            return environment
        }
    }

    /// Closes this handle: every later call on it throws `LedgerError.closed`. Calls already running finish
    /// first. The LMDB environment (its file descriptors and memory map) is closed when the last open
    /// handle of the path in this process is closed or released. Closing twice does nothing.
    public func close() {
        let released = environmentSlot.withLock { slot -> Environment? in
            defer { slot = nil }
            return slot
        }
        // Released outside the lock: the environment's deinit closes LMDB's handle.
        withExtendedLifetime(released) {}
    }

    /// Whether `close()` was called.
    public var isClosed: Bool { environmentSlot.withLock { $0 == nil } }

    /// Runs `body` in a read transaction, mapping storage failures to `LedgerError`.
    func read<R>(_ body: (borrowing ReadTransaction) throws -> R) throws(LedgerError) -> R {
        let environment = try environment
        do { return try environment.read(body) } catch { throw Self.map(error, path: path) }
    }

    /// Runs `body` in a write transaction with this ledger's durability and map limit, mapping failures to
    /// `LedgerError`. The body may run more than once (after the map grows) and only the last run commits,
    /// so it must return what it did and touch nothing outside the transaction: `@Sendable` makes the
    /// compiler refuse a body that mutates a captured variable (a summary counted inside it would count a
    /// rerun twice). Summaries, metrics, logs and progress are produced from its result, after the commit.
    func write<R>(_ body: @Sendable (borrowing WriteTransaction) throws -> R) throws(LedgerError) -> R {
        guard !options.readOnly else { throw .readOnly(path: path) }
        let environment = try environment
        do {
            return try environment.write(durability: options.durability, maximumMapSize: options.maximumMapSize, body)
        } catch {
            throw Self.map(error, path: path)
        }
    }

    /// Maps any failure of the storage layer, or of a transaction body, to the ledger's error.
    static func map(_ error: any Error, path: String) -> LedgerError {
        switch error {
        case let error as LedgerError: return error
        case let error as TransactionError<any Error>:
            switch error {
            case .storage(let failure): return map(failure, path: path)
            case .body(let failure): return map(failure, path: path)
            }
        case let error as TransactionError<StorageError>:
            switch error {
            case .storage(let failure), .body(let failure): return map(failure, path: path)
            }
        case let error as StorageError: return map(error, path: path)
        default: return .storage(code: nil, reason: "\(error)")
        }
    }

    private static func map(_ error: StorageError, path: String) -> LedgerError {
        switch error {
        case .mapFull(let max): return .ledgerFull(maximumBytes: max)
        case .corrupted(_, let detail): return .corrupt(reason: detail)
        case .malformedRecord(_, let reason): return .corrupt(reason: reason)
        case .versionMismatch: return .corrupt(reason: "the file was written by an incompatible LMDB version")
        case .cannotOpen(_, _, let reason): return .cannotOpen(path: path, reason: reason)
        case .tableMissing(let name): return .cannotOpen(path: path, reason: "the database '\(name)' is missing")
        case .nestedTransaction: return .nestedTransaction
        default: return .storage(code: error.code, reason: error.description)
        }
    }
}
