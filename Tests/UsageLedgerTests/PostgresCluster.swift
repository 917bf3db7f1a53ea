import Foundation
import Testing
@testable import UsageLedger

/// A throwaway PostgreSQL cluster for one test: `initdb` in a temporary directory as the `postgres` user,
/// listening on 127.0.0.1 on a free port with password authentication, stopped and removed at the end.
/// Debian's `postgresql` package provides the programs (`.ci/install-deps-postgres` installs it); a
/// machine without them fails the test rather than skipping it.
final class PostgresCluster {
    let directory: String
    let port: Int
    let password = "ledger-secret"
    /// The URL of the `ledger` database, as `usage-ledger-export --to` takes it.
    var url: String { "postgresql://postgres:\(password)@127.0.0.1:\(port)/ledger" }

    init() throws {
        let bin = try Self.binaries()
        var template = Array("/tmp/usage-ledger-pg-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap { mkdtemp($0) } }) else {
            throw LedgerError.invalidArgument(reason: "mkdtemp failed")
        }
        directory = String(cString: made)
        port = try Self.freePort()
        try "\(password)\n".write(toFile: directory + "/pw", atomically: false, encoding: .utf8)
        try Self.run("/bin/chown", ["-R", "postgres", directory])
        try Self.asPostgres(
            bin + "/initdb",
            ["-D", directory + "/data", "-U", "postgres", "-A", "scram-sha-256", "--pwfile=\(directory)/pw"])
        try start()
        try Self.run(
            "/usr/bin/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-c", "CREATE DATABASE ledger"],
            environment: ["PGPASSWORD": password])
    }

    /// Starts (or restarts) the server.
    func start() throws {
        try Self.asPostgres(
            try Self.binaries() + "/pg_ctl",
            [
                "-D", directory + "/data", "-l", directory + "/log", "-w", "-o",
                "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off", "start",
            ])
    }

    /// Stops the server at once, as a crash would (`-m immediate`).
    func stop() throws {
        try Self.asPostgres(try Self.binaries() + "/pg_ctl", ["-D", directory + "/data", "-m", "immediate", "stop"])
    }

    deinit {
        try? stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs `sql` with psql and returns its unaligned rows, fields separated by `|`.
    func query(_ sql: String) throws -> [String] {
        let output = try Self.run(
            "/usr/bin/psql",
            ["-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", "ledger", "-At", "-F", "|", "-c", sql],
            environment: ["PGPASSWORD": password])
        return output.split(separator: "\n").map(String.init)
    }

    /// The single value `sql` returns.
    func value(_ sql: String) throws -> String { try query(sql).first ?? "" }

    /// The directory holding Debian's PostgreSQL programs (the newest version installed).
    static func binaries() throws -> String {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let newest = versions.compactMap(Int.init).max() else {
            throw LedgerError.invalidArgument(
                reason: "PostgreSQL is not installed (/usr/lib/postgresql/*/bin); run .ci/install-deps-postgres")
        }
        return "/usr/lib/postgresql/\(newest)/bin"
    }

    /// A TCP port on 127.0.0.1 that nothing listens on now.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
            }
        }
        guard bound else { throw LedgerError.invalidArgument(reason: "no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func asPostgres(_ program: String, _ arguments: [String]) throws {
        try run("/usr/sbin/runuser", ["-u", "postgres", "--", program] + arguments)
    }

    /// Runs a program to completion; its standard output, or an error with its output. Spawned and reaped
    /// here (posix_spawn, waitpid), with output to a file: pg_ctl leaves a server running that Foundation's
    /// Process would wait on.
    @discardableResult
    static func run(_ program: String, _ arguments: [String], environment: [String: String] = [:]) throws -> String {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("pg-run-\(UUID().uuidString)").path
        defer {
            unlink(output)
            unlink(output + ".err")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, output + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, program, &actions, nil, argv, envp)
        guard spawned == 0 else { throw LedgerError.invalidArgument(reason: "cannot run \(program): \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let errors = (try? String(contentsOfFile: output + ".err", encoding: .utf8)) ?? ""
            throw LedgerError.invalidArgument(reason: "\(program) \(arguments) failed (\(status)): \(text)\(errors)")
        }
        return text
    }
}

/// Runs `usage-ledger-export` to completion.
func runExport(_ arguments: [String]) throws -> ProcessResult { try runCLI(arguments, executable: exportPath) }

/// Starts `usage-ledger-export`.
func startExport(_ arguments: [String]) throws -> (Process, Pipe, Pipe) {
    try startCLI(arguments, executable: exportPath)
}
