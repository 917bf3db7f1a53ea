import LMDBStorage

#if canImport(Glibc)
import Glibc
#endif

/// One `Environment` per ledger directory and process: LMDB releases a file's locks when any handle to it
/// closes, so a second handle in the same process would silently break cross-process locking.
///
/// Every `Ledger` of a path shares its environment, yet keeps its own options: the environment is opened
/// for writing whenever the files allow it (read-only handles are refused writes by `Ledger` itself), each
/// write commits with its handle's durability and grows the map up to its handle's maximum, and a bigger
/// initial map size is granted at once. Only the reader slots are fixed by the first open.
final class EnvironmentRegistry: Sendable {
    static let shared = EnvironmentRegistry()

    /// The map size no handle's own maximum can exceed; each write passes its handle's real limit.
    static let mapSizeCeiling = 1 << 50

    private final class WeakEnvironment: @unchecked Sendable {
        weak var environment: Environment?
        init(_ environment: Environment) { self.environment = environment }
    }

    private let open = Locked<[String: WeakEnvironment]>([:])

    /// The open environment for `path`, or a newly opened one, checked against `options`.
    func environment(path: String, options: LedgerOptions) throws -> Environment {
        try open.withLock { table throws -> Environment in
            let key = Self.canonical(path)
            if let existing = table[key]?.environment {
                try Self.check(existing, against: options, path: path)
                return existing
            }
            let environment = try Environment(path: path, options: Self.environmentOptions(path: path, options))
            table[key] = WeakEnvironment(environment)
            return environment
        }
    }

    /// What the first open of a path asks of LMDB.
    private static func environmentOptions(path: String, _ options: LedgerOptions) -> EnvironmentOptions {
        var environment = EnvironmentOptions()
        environment.durability = options.durability
        environment.initialMapSize = options.initialMapSize
        environment.maximumMapSize = mapSizeCeiling
        environment.maximumReaders = options.maximumReaders
        // A reader shares the environment with writers that may come later: open it writable if it can be.
        environment.readOnly = options.readOnly && !Environment.isWritable(path: path)
        environment.createIfMissing = options.createIfMissing && !options.readOnly
        return environment
    }

    /// Refuses what an open environment cannot give `options`, and grants a bigger initial map.
    private static func check(_ environment: Environment, against options: LedgerOptions, path: String) throws {
        if environment.options.maximumReaders != options.maximumReaders {
            throw LedgerError.optionConflict(
                option: "maximumReaders",
                reason:
                    "the ledger at '\(path)' is already open in this process "
                    + "with \(environment.options.maximumReaders) "
                    + "reader slots; reader slots are fixed by the first open (asked: \(options.maximumReaders))")
        }
        if environment.options.readOnly && !options.readOnly {
            throw LedgerError.cannotOpen(
                path: path,
                reason: "permission denied: this process opened it read-only because its files are not writable; "
                    + "a writer needs to write data.mdb and lock.mdb")
        }
        try environment.reserveMapSize(min(options.initialMapSize, options.maximumMapSize))
    }

    private static func canonical(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
