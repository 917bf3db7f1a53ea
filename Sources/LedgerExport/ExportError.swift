import LedgerCore
import PostgresNIO

/// Why an export stopped. Whatever it is, nothing of the batch under way was committed: each batch's
/// rows and the cursor commit in one PostgreSQL transaction.
public enum ExportError: Error, Sendable, CustomStringConvertible {
    /// The `--to` URL cannot be used.
    case invalidURL(String)
    /// The server cannot be reached, refused the login, or went away.
    case connection(target: String, reason: String)
    /// A statement failed on the server.
    case server(reason: String)
    /// The ledger failed (it is left as it was; the exporter only reads it).
    case ledger(LedgerError)
    /// An amount does not fit the column it goes to.
    case outOfRange(String)

    public var description: String {
        switch self {
        case .invalidURL(let reason): return "invalid --to: \(reason)"
        case .connection(let target, let reason): return "PostgreSQL at \(target): \(reason)"
        case .server(let reason): return "PostgreSQL refused a statement: \(reason)"
        case .ledger(let error): return "\(error.code): \(error.message)"
        case .outOfRange(let reason): return reason
        }
    }

    /// Describes a failure of postgres-nio or of the network for a person: the server's own message when
    /// there is one (authentication, missing database), else what the connection saw.
    static func describe(_ error: any Error) -> (reason: String, isConnection: Bool) {
        if let transaction = error as? PostgresTransactionError {
            let inner: (any Error)? =
                transaction.closureError ?? transaction.beginError ?? transaction.commitError
            if let inner { return describe(inner) }
        }
        guard let error = error as? PSQLError else { return ("\(error)", true) }
        if let info = error.serverInfo, let message = info[.message] {
            let state = info[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            // Class 08 is a connection exception, 28 an authorization one, 3D a missing database.
            let code = info[.sqlState] ?? ""
            let isConnection =
                code.hasPrefix("08") || code.hasPrefix("28") || code.hasPrefix("3D") || code.hasPrefix("57P")
            return (message + state, isConnection)
        }
        switch error.code {
        case .serverClosedConnection, .clientClosedConnection, .uncleanShutdown:
            return ("the connection closed before the transaction committed", true)
        case .connectionError:
            return (error.underlying.map { "cannot connect: \($0)" } ?? "cannot connect", true)
        default:
            return ("\(error.code)" + (error.underlying.map { ": \($0)" } ?? ""), true)
        }
    }
}
