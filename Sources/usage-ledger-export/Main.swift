import ArgumentParser
import LedgerExport
import Logging
import Synchronization
import UsageLedger
#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGTERM or SIGINT: `--follow` finishes its batch and exits 0. An atomic store is safe in a handler.
let stopRequested = Atomic<Bool>(false)

@main
struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage-ledger-export",
        abstract: "Export a ledger's feed and sealed hours into PostgreSQL, exactly once.",
        discussion: "Exit status: 0 success, 2 usage or fatal error (nothing half-committed), "
            + "4 the cursor predated pruned events (the gap is recorded in usage_gaps).")

    @Option(help: ArgumentHelp("The ledger directory (or set USAGE_LEDGER_DB).", valueName: "PATH")) var db: String?
    @Option(help: ArgumentHelp("postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE", valueName: "URL")) var to: String
    @Option(help: "The cell's name: every exported row carries it.") var cell: String
    @Option(help: "Events per PostgreSQL transaction.") var batchSize = ExportOptions(cell: "").batchSize
    @Flag(help: "Keep exporting as events arrive, until SIGTERM.") var follow = false
    @Option(help: "With --follow, seconds between polls.") var interval = 1.0
    @Flag(help: "Export events only, not usage_hourly.") var noHourly = false
    @Option(help: "json for programs, table for people (default: table on a terminal, json otherwise).")
    var format: String?

    func validate() throws {
        guard (1...100_000).contains(batchSize) else { throw ValidationError("--batch-size must be 1 to 100000") }
        guard interval > 0, interval <= 3600 else {
            throw ValidationError("--interval must be over 0 and at most 3600")
        }
        guard !cell.isEmpty else { throw ValidationError("--cell must not be empty") }
        guard format == nil || format == "json" || format == "table" else {
            throw ValidationError("--format must be json or table")
        }
    }

    func run() async throws {
        let started = monotonicSeconds()
        let outcome: Result<(ExportSummary, String), ExportError> = await export()
        switch outcome {
        case .failure(let error):
            printError("usage-ledger-export: \(error)")
            finish(status: 2)
        case .success(let (summary, database)):
            if !summary.createdTables.isEmpty {
                printError("created tables \(summary.createdTables.joined(separator: ", ")) in \(database)")
            }
            report(summary, seconds: monotonicSeconds() - started)
            for gap in summary.gaps {
                printError(
                    "usage-ledger-export: the cursor of cell '\(cell)' (seq \(gap.afterSeq)) predates events "
                        + "compaction pruned through seq \(gap.throughSeq); recorded in usage_gaps, exported what "
                        + "remains"
                )
            }
            finish(status: summary.gaps.isEmpty ? 0 : 4)
        }
    }

    /// Ends the process with `status`. Explicitly: returning (or throwing `ExitCode`) from an async main
    /// sometimes left the process waiting on postgres-nio's event loop threads after a lost connection.
    private func finish(status: Int32) -> Never {
        fflush(nil)  // every stdio stream: the summary is printed with print()
        Glibc.exit(status)
    }

    /// Opens the ledger and the connection, and exports once or until stopped.
    private func export() async -> Result<(ExportSummary, String), ExportError> {
        do throws(ExportError) {
            let target = try PostgresTarget(url: to)
            let ledger = try openLedger()
            var options = ExportOptions(cell: cell)
            options.batchSize = batchSize
            options.exportsHourly = !noHourly
            var logger = Logger(label: "usage-ledger-export")
            logger.logLevel = getenv("USAGE_LEDGER_EXPORT_TRACE") != nil ? .trace : .critical
            let exporter = try await PostgresExporter.connect(
                to: target, ledger: ledger, options: options, logger: logger)
            var summary = ExportSummary()
            summary.createdTables = try await exporter.prepareTables()
            if follow { installStopHandlers() }
            repeat {
                let pass = try await exporter.exportAll(
                    shouldStop: { stopRequested.load(ordering: .relaxed) },
                    progress: { showProgress(summary, plus: $0) })
                summary.events += pass.events
                summary.hours += pass.hours
                summary.gaps += pass.gaps
                showProgress(summary, plus: ExportSummary())
                if follow { await pause() }
            } while follow && !stopRequested.load(ordering: .relaxed)
            if isatty(STDERR_FILENO) == 1 { writeError("\r\u{1B}[K") }
            await exporter.close()
            return .success((summary, target.database))
        } catch {
            return .failure(error)
        }
    }

    private func openLedger() throws(ExportError) -> Ledger {
        var options = LedgerOptions()
        options.readOnly = true
        let path = db ?? getenv("USAGE_LEDGER_DB").map { String(cString: $0) }
        guard let path else {
            throw .ledger(.invalidArgument(reason: "no ledger given: pass --db PATH or set USAGE_LEDGER_DB"))
        }
        do { return try Ledger(path: path, options: options) } catch { throw .ledger(error) }
    }

    /// Sleeps `--interval`, waking early when stopped.
    private func pause() async {
        var left = interval
        while left > 0 && !stopRequested.load(ordering: .relaxed) {
            try? await Task.sleep(for: .milliseconds(Int(min(left, 0.1) * 1000)))
            left -= 0.1
        }
    }

    private func showProgress(_ summary: ExportSummary, plus pass: ExportSummary) {
        guard isatty(STDERR_FILENO) == 1 else { return }
        writeError("\rexported \(summary.events + pass.events) events, \(summary.hours + pass.hours) hourly rows...")
    }

    private func report(_ summary: ExportSummary, seconds: Double) {
        let table = (format ?? (isatty(STDOUT_FILENO) == 1 ? "table" : "json")) == "table"
        let rounded = (seconds * 1000).rounded() / 1000
        if table {
            print(
                "cell \(cell): \(summary.events) events and \(summary.hours) hourly rows exported in \(rounded) s, "
                    + "\(summary.gaps.count) gaps")
        } else {
            var writer = JSONWriter()
            writer.object { o in
                o.member("cell", cell)
                o.member("events", summary.events)
                o.member("hours", summary.hours)
                o.member("gaps", summary.gaps.count)
                o.member("seconds", json: String(rounded))
            }
            print(writer.text)
        }
    }
}

/// SIGTERM and SIGINT set `stopRequested` instead of ending the process.
func installStopHandlers() {
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { _ in stopRequested.store(true, ordering: .relaxed) }
    sigemptyset(&action.sa_mask)
    sigaction(SIGTERM, &action, nil)
    sigaction(SIGINT, &action, nil)
}

func monotonicSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

func printError(_ text: String) { writeError(text + "\n") }

func writeError(_ text: String) {
    var copy = text
    copy.withUTF8 { bytes in _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
}
