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
    let environment: Environment
    let databases: Databases
    let metrics: LedgerMetrics
    /// The logger from the options.
    var logger: Logger { options.logger }

    /// The named databases of format v1.
    struct Databases: Sendable {
        let meta: Database
        let events: Database
        let eventIDs: Database
        let resources: Database
        let timeline: Database
        let resourceState: Database
        let running: Database
        let ownerTotals: Database
        let hourly: Database
        let compactionBase: Database
        let pending: Database
        let ownerHourly: Database

        var all: [Database] {
            [meta, events, eventIDs, resources, timeline, resourceState, running, ownerTotals, hourly, compactionBase, pending, ownerHourly]
        }
        var projections: [Database] { [resourceState, running, ownerTotals, hourly, pending, ownerHourly] }
    }

    /// Opens the ledger at `path` (a directory), creating it unless `options.createIfMissing` is off or
    /// the ledger is opened read-only.
    ///
    /// - Throws: `LedgerError.formatTooNew` for a ledger written by a newer format,
    ///   `LedgerError.cannotOpen` when the path cannot be opened or holds no ledger.
    public init(path: String, options: LedgerOptions = LedgerOptions()) throws(LedgerError) {
        self.path = path
        self.options = options
        metrics = LedgerMetrics(dimensions: options.metricsDimensions)
        do {
            environment = try EnvironmentRegistry.shared.environment(path: path, options: options.environmentOptions)
            if options.checksStructureAtOpen { _ = try environment.checkStructure() }
            let opened = try environment.openDatabases(StorageFormat.Name.all)
            databases = Databases(meta: opened[0], events: opened[1], eventIDs: opened[2], resources: opened[3], timeline: opened[4],
                                  resourceState: opened[5], running: opened[6], ownerTotals: opened[7], hourly: opened[8],
                                  compactionBase: opened[9], pending: opened[10], ownerHourly: opened[11])
        } catch StorageError.databaseMissing {
            // A ledger of an older format lacks the databases added since; read-only, it cannot gain them.
            if let environment = try? EnvironmentRegistry.shared.environment(path: path, options: options.environmentOptions),
               let found = try? Self.formatVersion(in: environment), found < StorageFormat.currentVersion {
                throw .cannotOpen(path: path, reason: "on-disk format \(found) must be upgraded; open it once for writing")
            }
            throw .cannotOpen(path: path, reason: "it holds no usage ledger (run 'usage-ledger init' first)")
        } catch {
            throw Self.map(error, path: path)
        }
        try checkFormat()
    }

    /// Refuses ledgers of a newer format; stamps new ledgers with the current one.
    private func checkFormat() throws(LedgerError) {
        let found = try read { txn -> UInt32? in
            guard let bytes = try txn.get(databases.meta, StorageFormat.MetaKey.formatVersion) else { return nil }
            guard bytes.count == 4 else { throw LedgerError.corrupt(reason: "format_version is not a 4-byte number") }
            return UInt32(bigEndian: bytes.loadUnaligned(as: UInt32.self))
        }
        if let found {
            guard found <= StorageFormat.currentVersion else {
                throw .formatTooNew(found: found, supported: StorageFormat.currentVersion)
            }
            if found < StorageFormat.currentVersion {
                // Format 1 had the log only; 2 materialized rows on append; 3 in rollup; 4 adds owner_hourly.
                // Projections are derived from the log (and owner_hourly from the rows), so a rebuild upgrades them.
                guard !options.readOnly else {
                    throw .cannotOpen(path: path, reason: "on-disk format \(found) must be upgraded; open it once for writing")
                }
                logger.notice("upgrading the on-disk format from \(found) to \(StorageFormat.currentVersion) by rebuilding the projections")
                _ = try rebuild()
                try stampFormat(StorageFormat.currentVersion, replacing: true)
            }
            return
        }
        guard !options.readOnly else { throw .cannotOpen(path: path, reason: "it holds no usage ledger") }
        try stampFormat(StorageFormat.currentVersion, replacing: false)
    }

    /// The format version stamped in a ledger's `meta`, read without opening the other databases.
    private static func formatVersion(in environment: Environment) throws -> UInt32? {
        guard let meta = try environment.openDatabases([StorageFormat.Name.meta]).first else { return nil }
        return try environment.read { txn -> UInt32? in
            guard let bytes = try txn.get(meta, StorageFormat.MetaKey.formatVersion), bytes.count == 4 else { return nil }
            return UInt32(bigEndian: bytes.loadUnaligned(as: UInt32.self))
        }
    }

    private func stampFormat(_ version: UInt32, replacing: Bool) throws(LedgerError) {
        try write { txn in
            var writer = ByteWriter(capacity: 4)
            writer.writeBigEndian(version)
            try txn.put(databases.meta, StorageFormat.MetaKey.formatVersion, writer.bytes, mode: replacing ? .upsert : .insertOnly)
        }
    }

    /// The on-disk format version of this ledger.
    public static var formatVersion: UInt32 { StorageFormat.currentVersion }

    // MARK: - Transactions

    /// Runs `body` in a read transaction, mapping storage failures to `LedgerError`.
    func read<R>(_ body: (borrowing ReadTransaction) throws -> R) throws(LedgerError) -> R {
        do { return try environment.read(body) } catch { throw Self.map(error, path: path) }
    }

    /// Runs `body` in a write transaction, mapping storage failures to `LedgerError`. The body may run more
    /// than once (after the map grows), so it must have no effects outside the transaction.
    func write<R>(_ body: (borrowing WriteTransaction) throws -> R) throws(LedgerError) -> R {
        do { return try environment.write(body) } catch { throw Self.map(error, path: path) }
    }

    static func map(_ error: any Error, path: String) -> LedgerError {
        switch error {
        case let error as LedgerError: return error
        case let error as StorageError:
            switch error {
            case .mapFull(let max): return .ledgerFull(maximumBytes: max)
            case .corrupted(let why): return .corrupt(reason: why)
            case .versionMismatch: return .corrupt(reason: "the file was written by an incompatible LMDB version")
            case .cannotOpen(_, _, let reason): return .cannotOpen(path: path, reason: reason)
            case .databaseMissing(let name): return .cannotOpen(path: path, reason: "the database '\(name)' is missing")
            default: return .storage(reason: error.description)
            }
        default: return .storage(reason: "\(error)")
        }
    }
}
