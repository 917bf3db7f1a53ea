import ArgumentParser
import UsageLedger

struct Compact: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prune events older than the horizon, keeping running resources' opening events; drop old snapshots.",
        discussion: """
            The horizon is now minus --cutoff-age-days, floored to a whole hour. Refuses unless hourly snapshots \
            cover the horizon (run rollup first). One compaction at a time: a second exits with status \
            \(ExitStatus.failure.rawValue) naming the holder.
            """)
    @OptionGroup var ledger: LedgerArguments
    @Option(help: "Events older than this many days are pruned (by the rules in docs/compaction.md).")
    var cutoffAgeDays: Int = CompactionOptions.defaultCutoffAgeDays
    @Option(help: "Hourly snapshots older than this many days are dropped.")
    var snapshotRetentionDays: Int = CompactionOptions.defaultSnapshotRetentionDays
    @Option(help: "About this many events pruned per write transaction.")
    var batchSize: Int = CompactionOptions.defaultBatchSize
    @Flag(help: "Print what would be pruned, by kind and rule, and change nothing.") var dryRun = false
    @Option(help: "The ledger's clock as RFC 3339.") var now: String?

    func run() throws {
        var options = CompactionOptions()
        options.cutoffAgeDays = cutoffAgeDays
        options.snapshotRetentionDays = snapshotRetentionDays
        options.batchSize = batchSize
        options.dryRun = dryRun
        options.now = try parseNow(now)
        let showProgress = isTerminal(standardError: true)
        let summary = try ledger.open(readOnly: dryRun, now: options.now).compact(options) { progress in
            guard showProgress else { return }
            writeError(
                "\rcompacting: \(progress.resourcesVisited)/\(progress.resourcesTotal) resources, "
                    + "\(progress.eventsPruned) events pruned")
        }
        if showProgress { writeError("\r\u{1B}[K") }
        ledger.printResult(
            json: { o in
                o.member("dry_run", summary.dryRun)
                o.member("horizon", summary.horizon.rfc3339)
                o.member("events_examined", summary.eventsExamined)
                o.member("resources_compacted", summary.resourcesCompacted)
                o.member("pruned", summary.prunedCount)
                o.member("pruned_by_kind") { kinds in
                    for kind in EventKind.allCases {
                        guard let rules = summary.pruned[kind] else { continue }
                        kinds.member(kind.rawValue) { r in
                            for rule in PruneRule.allCases { if let n = rules[rule] { r.member(rule.rawValue, n) } }
                        }
                    }
                }
                o.member("opening_events_kept", summary.openingEventsKept)
                o.member("snapshots_dropped", summary.snapshotsDropped)
                o.member("snapshots_retained_from", summary.snapshotsRetainedFrom.rfc3339)
                o.member("duration_ms", summary.durationMicroseconds / 1000)
            },
            table: {
                print(
                    "\(summary.dryRun ? "would prune" : "pruned") \(summary.prunedCount) events "
                        + "before \(summary.horizon) (\(summary.eventsExamined) examined,"
                        + " \(summary.resourcesCompacted) "
                        + "resources); kept \(summary.openingEventsKept) opening events"
                )
                var table = TextTable("KIND", "RULE", "EVENTS", rightAligned: [2])
                for kind in EventKind.allCases {
                    for rule in PruneRule.allCases {
                        if let n = summary.pruned[kind]?[rule] { table.add(kind.rawValue, rule.rawValue, String(n)) }
                    }
                }
                print(table.rendered)
                print(
                    "snapshots \(summary.dryRun ? "to drop" : "dropped") "
                        + "before \(summary.snapshotsRetainedFrom): \(summary.snapshotsDropped); "
                        + "took \(summary.durationMicroseconds / 1000) ms"
                )
            })
    }
}

/// Reads the `--running FILE` NDJSON of running resources; a bad line is a usage error naming the line.
func readRunning(_ file: String) throws -> [RunningResource] {
    let fd = try openInput(file)
    defer { closeInput(fd) }
    do {
        return try RunningResource.readInventory(fd: fd)
    } catch let bad as NDJSONLineError {
        throw ValidationError("\(file) line \(bad.line): \(bad.error.code): \(bad.error.message)")
    }
}

func printSeed(_ summary: SeedSummary, format: OutputFormat) {
    for (index, error) in summary.rejected {
        printError("running resource \(index + 1): \(error.code): \(error.message)")
    }
    switch format {
    case .json:
        var writer = JSONWriter()
        writer.object { o in
            o.member("baselines_appended", summary.baselinesAppended)
            o.member("already_running", summary.alreadyRunning)
            o.member("footprints_corrected", summary.footprintsCorrected)
            o.member("stopped_missing", summary.stoppedMissing)
            o.member("duplicates", summary.duplicates)
            o.member("rejected", summary.rejected.count)
        }
        print(writer.text)
    case .table:
        print(
            "\(summary.baselinesAppended) baselines appended, \(summary.alreadyRunning) already "
                + "running (\(summary.footprintsCorrected) footprints corrected), "
                + "\(summary.stoppedMissing) missing ones stopped, \(summary.duplicates) "
                + "duplicates, \(summary.rejected.count) rejected"
        )
    }
}

struct SeedBaseline: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed-baseline",
        abstract: "Append a was_running baseline, at now, for each listed resource the ledger does not see running.")
    @OptionGroup var ledger: LedgerArguments
    @Option(
        help: ArgumentHelp(
            "NDJSON of running resources: {\"resource\":{...},\"footprint\":{...},\"attributes\":{...}}",
            valueName: "FILE"))
    var running: String
    @Flag(help: "Also stop (reason absent_at_reseed) every running resource the list omits.") var stopMissing = false
    @Flag(
        help: ArgumentHelp(
            "Also append a was_running with the listed footprint for each listed running resource whose footprint "
                + "differs."))
    var correctFootprints = false
    @Option(help: "The ledger's clock as RFC 3339 (the baselines' occurred_at).") var now: String?

    func run() throws {
        let resources = try readRunning(running)
        let summary = try ledger.open(create: true, now: try parseNow(now)).seedBaselines(
            resources, stopMissing: stopMissing, correctFootprints: correctFootprints)
        printSeed(summary, format: ledger.output)
        if !summary.rejected.isEmpty { throw CommandExit(status: .someRejected) }
    }
}

struct PurgeAndReseed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge-and-reseed",
        abstract: "Destructively empty the log and projections, then seed baselines; refuses without --yes.")
    @OptionGroup var ledger: LedgerArguments
    @Option(help: ArgumentHelp("NDJSON of running resources.", valueName: "FILE")) var running: String
    @Flag(help: "Really delete.") var yes = false
    @Option(help: "The ledger's clock as RFC 3339.") var now: String?

    func run() throws {
        let resources = try readRunning(running)
        let opened = try ledger.open(now: try parseNow(now))
        guard yes else {
            let preview = try opened.purgePreview()
            printError(
                "purge-and-reseed: refusing without --yes. It would delete \(preview.events) "
                    + "events, \(preview.resources) resources and \(preview.hourlyRows) hourly snapshot rows, then "
                    + "seed \(resources.count) baselines."
            )
            throw CommandExit(status: .failure)
        }
        printSeed(try opened.purgeAndReseed(running: resources), format: ledger.output)
    }
}
