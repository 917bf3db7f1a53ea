import LMDBStorage
#if canImport(Glibc)
import Glibc
#endif

/// One `Environment` per ledger directory and process: LMDB releases a file's locks when any handle to it
/// closes, so a second handle in the same process would silently break cross-process locking.
final class EnvironmentRegistry: Sendable {
    static let shared = EnvironmentRegistry()

    private final class WeakEnvironment: @unchecked Sendable {
        weak var environment: Environment?
        init(_ environment: Environment) { self.environment = environment }
    }

    private let open = Locked<[String: WeakEnvironment]>([:])

    /// The open environment for `path`, or a newly opened one.
    func environment(path: String, options: EnvironmentOptions) throws(StorageError) -> Environment {
        try open.withLock { table throws(StorageError) -> Environment in
            let key = Self.canonical(path)
            if let existing = table[key]?.environment { return existing }
            let environment = try Environment(path: path, options: options)
            table[key] = WeakEnvironment(environment)
            return environment
        }
    }

    private static func canonical(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
