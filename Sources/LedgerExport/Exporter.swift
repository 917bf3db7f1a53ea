import LMDBStorage
import Logging
import PostgresNIO
import UsageLedger

/// What an export does.
public struct ExportOptions: Sendable {
    /// The cell's name: every row the export writes carries it, so several ledgers share one database.
    public var cell: String
    /// Events per PostgreSQL transaction.
    public var batchSize = 5_000
    /// Whether sealed hours are exported into `usage_hourly` too.
    public var exportsHourly = true

    /// Options for the cell `cell`.
    public init(cell: String) { self.cell = cell }
}

/// A range of the feed that compaction pruned before it was exported.
public struct ExportGap: Sendable, Equatable {
    /// The cursor the export stood at.
    public var afterSeq: UInt64
    /// The highest `seq` compaction pruned.
    public var throughSeq: UInt64
}

/// What an export wrote.
public struct ExportSummary: Sendable, Equatable {
    /// Events newly written to `usage_events`.
    public var events = 0
    /// Rows written (inserted or updated) in `usage_hourly`.
    public var hours = 0
    /// Pruned ranges recorded in `usage_gaps`.
    public var gaps: [ExportGap] = []
    /// Tables this export created (empty when they existed).
    public var createdTables: [String] = []

    /// An empty summary.
    public init() {}
}

/// Exports one ledger's feed and sealed hours into PostgreSQL, exactly once: each batch's rows and the
/// cell's cursor commit in one transaction, so a rerun continues from the cursor with no gap and no double.
///
/// Use it from one task at a time; open it with `connect(to:ledger:options:logger:)`, close it with `close()`.
public final class PostgresExporter: Sendable {
    let ledger: Ledger
    let connection: PostgresConnection
    let options: ExportOptions
    let logger: Logger
    let target: PostgresTarget
    /// Fires when the connection closes, for every call still waiting on it.
    let closeWatch = CloseWatch()
    /// The feed's next page, read while the current batch is written (`nextPage(after:)`).
    let readAhead = Locked<ReadAhead?>(nil)

    private init(
        ledger: Ledger, connection: PostgresConnection, options: ExportOptions, logger: Logger, target: PostgresTarget
    ) {
        self.ledger = ledger
        self.connection = connection
        self.options = options
        self.logger = logger
        self.target = target
        let watch = closeWatch
        connection.closeFuture.whenComplete { _ in watch.fire() }
    }

    /// Connects to `target` for exporting `ledger`.
    ///
    /// - Throws: `ExportError.connection` when the server cannot be reached or refuses the login.
    public static func connect(
        to target: PostgresTarget, ledger: Ledger, options: ExportOptions, logger: Logger
    ) async throws(ExportError) -> PostgresExporter {
        let configuration = PostgresConnection.Configuration(
            host: target.host, port: target.port, username: target.user, password: target.password,
            database: target.database, tls: .disable)
        do {
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
            return PostgresExporter(
                ledger: ledger, connection: connection, options: options, logger: logger, target: target)
        } catch {
            throw .connection(target: target.redacted, reason: ExportError.describe(error).reason)
        }
    }

    /// Closes the connection.
    public func close() async {
        readAhead.withLock { $0?.page.cancel() }
        try? await connection.close()
    }

    /// Runs `body` and maps any failure to `ExportError`. A body still waiting when the connection closes
    /// fails at once: postgres-nio was seen to leave a query of a lost connection waiting for ever.
    func perform<R: Sendable>(_ body: @escaping @Sendable () async throws -> R) async throws(ExportError) -> R {
        let watch = closeWatch
        let result: Result<R, any Error> = await withCheckedContinuation { continuation in
            let once = ResumeOnce(continuation)
            let handler = watch.add { once.resume(.failure(ConnectionLost())) }
            Task {
                let outcome: Result<R, any Error>
                do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
                watch.remove(handler)
                once.resume(outcome)
            }
        }
        do { return try result.get() } catch let error as ExportError { throw error } catch let error as LedgerError {
            throw .ledger(error)
        } catch is ConnectionLost {
            throw .connection(target: target.redacted, reason: "the connection closed before the transaction committed")
        } catch {
            let (reason, isConnection) = ExportError.describe(error)
            throw isConnection ? .connection(target: target.redacted, reason: reason) : .server(reason: reason)
        }
    }

    /// Creates the export's tables when missing; returns the names of those it created.
    public func prepareTables() async throws(ExportError) -> [String] {
        try await perform { [self] in
            try await connection.withTransaction(logger: logger) { connection in
                // One exporter at a time creates them: CREATE TABLE IF NOT EXISTS races with itself.
                try await connection.query("SELECT pg_advisory_xact_lock(7401920815)", logger: logger)
                var existing = Set<String>()
                let rows = try await connection.query(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()", logger: logger)
                for try await name in rows.decode(String.self) { existing.insert(name) }
                var created: [String] = []
                for (name, sql) in ExportSchema.tables where !existing.contains(name) {
                    try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
                    created.append(name)
                }
                return created
            }
        }
    }
}

/// A page of the feed being read ahead, from the cursor `after`.
struct ReadAhead: Sendable {
    let after: UInt64
    let page: Task<PreparedPage, any Error>
}

/// The connection closed while a call waited on it.
struct ConnectionLost: Error {}

/// Handlers to run once when the connection closes (at once for one added after it closed).
final class CloseWatch: Sendable {
    private let state = Locked<(closed: Bool, next: Int, handlers: [Int: @Sendable () -> Void])>((false, 0, [:]))

    func add(_ handler: @escaping @Sendable () -> Void) -> Int {
        let (id, closed) = state.withLock { state -> (Int, Bool) in
            state.next += 1
            if !state.closed { state.handlers[state.next] = handler }
            return (state.next, state.closed)
        }
        if closed { handler() }
        return id
    }

    func remove(_ id: Int) { state.withLock { _ = $0.handlers.removeValue(forKey: id) } }

    func fire() {
        let handlers = state.withLock { state -> [@Sendable () -> Void] in
            state.closed = true
            defer { state.handlers = [:] }
            return Array(state.handlers.values)
        }
        for handler in handlers { handler() }
    }
}

/// A continuation resumed by whichever of two sides comes first.
final class ResumeOnce<R: Sendable>: Sendable {
    private let continuation = Locked<CheckedContinuation<Result<R, any Error>, Never>?>(nil)

    init(_ continuation: CheckedContinuation<Result<R, any Error>, Never>) {
        self.continuation.withLock { $0 = continuation }
    }

    func resume(_ result: Result<R, any Error>) {
        let taken = continuation.withLock { slot -> CheckedContinuation<Result<R, any Error>, Never>? in
            defer { slot = nil }
            return slot
        }
        taken?.resume(returning: result)
    }
}
