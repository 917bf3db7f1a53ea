import ArgumentParser
import UsageLedger
#if canImport(Glibc)
import Glibc
#endif

/// Exit statuses of `usage-ledger`: the only place they are numbered.
enum ExitStatus: Int32, CaseIterable {
    /// Everything was accepted.
    case success = 0
    /// `verify` found projections that differ from the log.
    case differences = 1
    /// Usage errors and fatal errors (nothing or only whole committed batches were written).
    case failure = 2
    /// Some input lines were rejected; the rest was committed.
    case someRejected = 3
    /// `events`: compaction pruned events after the cursor (the page still holds what remains).
    case eventsPruned = 4

    /// What the status means, for the help text.
    var meaning: String {
        switch self {
        case .success: "success"
        case .differences: "verify found differences"
        case .failure: "usage or fatal error"
        case .someRejected: "some input lines rejected (the rest committed)"
        case .eventsPruned: "events: the cursor predates pruned events"
        }
    }

    /// Ends the process with this status.
    func exit() -> Never { Glibc.exit(rawValue) }
}

/// Thrown by a command to end with a given status after it has printed what it had to say.
struct CommandExit: Error {
    let status: ExitStatus
}

/// A failure of the command itself (not of the ledger): printed, then exit status `failure`.
struct CommandFailure: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

@main
struct UsageLedgerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage-ledger",
        abstract: "An event-sourced usage ledger on LMDB: record usage events exactly once, read them back.",
        discussion: "Exit status: "
            + ExitStatus.allCases.map { "\($0.rawValue) \($0.meaning)" }.joined(separator: ", ") + ".",
        subcommands: [
            Init.self, Append.self, Events.self, History.self, Current.self, Usage.self, Rollup.self,
            Reconcile.self, Verify.self, Rebuild.self, Compact.self, SeedBaseline.self, PurgeAndReseed.self,
            Stats.self, Backup.self, Demo.self,
        ])

    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let exit as CommandExit {
            exit.status.exit()
        } catch let failure as CommandFailure {
            printError("usage-ledger: \(failure.message)")
            ExitStatus.failure.exit()
        } catch let error as LedgerError {
            printError("usage-ledger: \(error.code): \(error.message)")
            ExitStatus.failure.exit()
        } catch {
            // Help and version requests end "successfully" in ArgumentParser's terms; everything else it
            // reports is a usage error.
            if exitCode(for: error) == .success {
                print(fullMessage(for: error))
                ExitStatus.success.exit()
            }
            printError(fullMessage(for: error))
            ExitStatus.failure.exit()
        }
    }
}

/// Writes a line to standard error.
func printError(_ text: String) {
    writeError(text + "\n")
}

/// Whether standard error (or output) is a terminal, for progress lines.
func isTerminal(standardError: Bool) -> Bool { isatty(standardError ? STDERR_FILENO : STDOUT_FILENO) == 1 }

/// Writes text to standard error, unbuffered.
func writeError(_ text: String) {
    var copy = text
    copy.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(STDERR_FILENO, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
            if written <= 0 { if errno == EINTR { continue } else { return } }
            offset += written
        }
    }
}

/// Output format: JSON for programs, aligned tables for people.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case json, table
}

// Not `@retroactive`: the type is declared in this package, and the compiler refuses the attribute.
extension Durability: ExpressibleByArgument {}

/// Options every command that opens a ledger takes.
struct LedgerArguments: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The ledger directory (or set USAGE_LEDGER_DB).", valueName: "PATH"))
    var db: String?

    @Option(name: .long, help: "json for programs, table for people (default: table on a terminal, json otherwise).")
    var format: OutputFormat?

    @Option(name: .long, help: "Durability of commits.")
    var durability: Durability = LedgerOptions().durability

    @Flag(name: .long, help: "Log what the ledger does (rollups, compactions, reseeds, failures) to standard error.")
    var verbose = false

    /// The ledger path from `--db` or the environment.
    func path() throws -> String {
        if let db { return db }
        if let value = getenv("USAGE_LEDGER_DB") { return String(cString: value) }
        throw ValidationError("no ledger given: pass --db PATH or set USAGE_LEDGER_DB")
    }

    /// The output format, defaulting on whether standard output is a terminal.
    var output: OutputFormat { format ?? (isatty(STDOUT_FILENO) == 1 ? .table : .json) }

    /// Prints a command's result in the chosen format: one JSON object that `json` writes, or what `table`
    /// prints.
    func printResult(json: (inout JSONWriter.ObjectWriter) -> Void, table: () -> Void) {
        switch output {
        case .json:
            var writer = JSONWriter()
            writer.object(json)
            print(writer.text)
        case .table:
            table()
        }
    }

    /// Opens the ledger with the given clock.
    func open(
        create: Bool = false, readOnly: Bool = false, now: Timestamp? = nil,
        checkingStructure: Bool = false
    ) throws -> Ledger {
        var options = LedgerOptions()
        options.durability = durability
        options.createIfMissing = create
        options.readOnly = readOnly
        options.checksStructureAtOpen = checkingStructure
        if verbose { options.logger = LedgerOptions.standardErrorLogger() }
        if let now { options.clock = .fixed(now) }
        return try Ledger(path: try path(), options: options)
    }
}

/// Parses `--now`.
func parseNow(_ text: String?) throws -> Timestamp? {
    guard let text else { return nil }
    return try parseTime(text, "--now")
}

/// Parses an RFC 3339 option value; a bad one is a usage error naming the option.
func parseTime(_ text: String, _ option: String) throws -> Timestamp {
    do { return try Timestamp(rfc3339: text) } catch {
        guard case .invalidField(_, let reason) = error else { throw error }
        throw ValidationError("\(option): \(reason)")
    }
}

/// Opens an input file for reading, `-` meaning standard input (which `closeInput` leaves open).
func openInput(_ file: String) throws -> Int32 {
    let fd = file == "-" ? STDIN_FILENO : Glibc.open(file, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
        throw LedgerError.invalidArgument(reason: "cannot read '\(file)': \(String(cString: strerror(errno)))")
    }
    return fd
}

/// Closes what `openInput` opened, unless it is standard input.
func closeInput(_ fd: Int32) {
    if fd != STDIN_FILENO { close(fd) }
}
