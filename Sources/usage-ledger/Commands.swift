import ArgumentParser
import UsageLedger
#if canImport(Glibc)
import Glibc
#endif

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a ledger (a directory with mode 0700, files 0600).")
    @OptionGroup var ledger: LedgerArguments

    func run() throws {
        let opened = try ledger.open(create: true)
        let stats = try opened.statistics()
        ledger.printResult(
            json: { o in
                o.member("path", opened.path)
                o.member("format_version", stats.formatVersion)
                o.member("next_seq", stats.nextSeq)
            },
            table: {
                print("ledger ready at \(opened.path) (format \(stats.formatVersion), next seq \(stats.nextSeq))")
            })
    }
}

struct Append: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ingest NDJSON events from a file or standard input.",
        discussion: """
            Each rejected line goes to standard error as 'line N: id ID: CODE: MESSAGE'. \
            Exit status \(ExitStatus.success.rawValue) when nothing was rejected, \
            \(ExitStatus.someRejected.rawValue) when some lines were (the rest is committed), \
            \(ExitStatus.failure.rawValue) on error.
            """)
    @OptionGroup var ledger: LedgerArguments
    @Argument(help: "An NDJSON file, or - for standard input.") var file: String = "-"
    @Option(help: "The ledger's clock as RFC 3339 (for recorded_at and the in_future check).") var now: String?
    @Option(help: "Events per write transaction.") var batchSize: Int = NDJSONIngest.defaultBatchSize

    func run() throws {
        let sizes = NDJSONIngest.batchSizes
        guard sizes.contains(batchSize) else {
            throw ValidationError("--batch-size must be \(sizes.lowerBound) to \(sizes.upperBound)")
        }
        let opened = try ledger.open(create: true, now: try parseNow(now))
        let fd = try openInput(file)
        defer { closeInput(fd) }
        var ingest = NDJSONIngest()
        ingest.batchSize = batchSize
        let showProgress = isatty(STDERR_FILENO) == 1
        let summary = try ingest.run(
            fd: fd, into: opened,
            onRejection: { rejection in
                if showProgress { writeError("\r\u{1B}[K") }
                let id = rejection.eventID.map { "id \($0): " } ?? ""
                printError("line \(rejection.line): \(id)\(rejection.error.code): \(rejection.error.message)")
            },
            onProgress: { progress in
                guard showProgress else { return }
                writeError("\r\(progress.lines) lines, \(progress.appended) appended, \(progress.rejected) rejected")
            })
        if showProgress { writeError("\r\u{1B}[K") }
        ledger.printResult(
            json: { o in
                o.member("lines", summary.lines)
                o.member("appended", summary.appended)
                o.member("duplicates", summary.duplicates)
                o.member("rejected", summary.rejected)
                o.member("unmatched_stops", summary.unmatchedStops)
                o.member("first_seq", summary.firstSeq)
                o.member("last_seq", summary.lastSeq)
            },
            table: {
                let range = summary.firstSeq.map { " (seq \($0) to \(summary.lastSeq ?? $0))" } ?? ""
                print(
                    "\(summary.appended) appended\(range), \(summary.duplicates) duplicates, "
                        + "\(summary.rejected) rejected, \(summary.unmatchedStops) unmatched stops, \(summary.lines) "
                        + "lines"
                )
            })
        if summary.rejected > 0 { throw CommandExit(status: .someRejected) }
    }
}

/// Prints events as NDJSON (json) or a table.
func printEvents(_ events: [RecordedEvent], format: OutputFormat) {
    switch format {
    case .json:
        var out = ""
        for event in events {
            out += EventJSON.encode(event)
            out += "\n"
        }
        print(out, terminator: "")
    case .table:
        var table = TextTable("SEQ", "OCCURRED_AT", "KIND", "RESOURCE", "OWNER", "DETAIL", "ID", rightAligned: [0])
        for recorded in events {
            let event = recorded.event
            var detail = ""
            if let footprint = event.footprint {
                detail = footprint.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
            }
            if let deltas = event.deltas {
                detail = deltas.map { "\($0.name)\($0.value >= 0 ? "+" : "")\($0.value)" }.joined(separator: " ")
            }
            if let reason = event.reason { detail += detail.isEmpty ? "(\(reason))" : " (\(reason))" }
            table.add(
                String(recorded.seq), event.occurredAt.rfc3339, event.kind.rawValue, event.resource.description,
                event.owner, detail, event.id)
        }
        print(table.rendered)
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print events after a cursor, in seq order (the consumer feed).")
    @OptionGroup var ledger: LedgerArguments
    @Option(help: "Print events with seq greater than this (0 for the start).") var after: UInt64 = 0
    @Option(help: "The most events to print (1 to \(Ledger.maximumPageSize)).") var limit: Int = Ledger.defaultPageSize

    func run() throws {
        let page = try ledger.open(readOnly: true).events(after: after, limit: limit)
        printEvents(page.events, format: ledger.output)
        if let pruned = page.pruned {
            printError(
                "usage-ledger: events_pruned: compaction pruned events up to seq \(pruned.throughSeq) "
                    + "(before \(pruned.horizon)) after cursor \(after); what remains was printed. Rebuild your view "
                    + "from 'usage-ledger current' (and 'usage'), then continue from "
                    + "seq \(max(after, pruned.throughSeq))."
            )
            throw CommandExit(status: .eventsPruned)
        }
    }
}

/// Parses a `TYPE/ID` option value; a bad one is a usage error naming the option.
func parseResource(_ text: String, _ option: String = "--resource") throws -> ResourceID {
    guard let id = ResourceID(parsing: text) else { throw ValidationError("\(option) must be TYPE/ID, got '\(text)'") }
    return id
}

struct History: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print one resource's events in timeline order (occurred_at, then seq).")
    @OptionGroup var ledger: LedgerArguments
    @Option(help: ArgumentHelp("The resource as TYPE/ID.", valueName: "TYPE/ID")) var resource: String

    func run() throws {
        let id = try parseResource(resource)
        printEvents(try ledger.open(readOnly: true).history(of: id), format: ledger.output)
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Print counts by kind, duplicates and rejections, rollup lag, the compaction horizon, database sizes, "
            + "map use and reader slots."
    )
    @OptionGroup var ledger: LedgerArguments
    @Option(help: "The ledger's clock as RFC 3339 (the rollup lag is measured from it).") var now: String?

    func run() throws {
        let stats = try ledger.open(readOnly: true, now: try parseNow(now)).statistics()
        let names = stats.databases.keys.sorted()
        ledger.printResult(
            json: { o in
                o.member("format_version", stats.formatVersion)
                o.member("events_appended", stats.appendedEvents)
                o.member("events_stored", stats.storedEvents)
                o.member("events_by_kind") { k in
                    for kind in EventKind.allCases { k.member(kind.rawValue, stats.eventsByKind[kind] ?? 0) }
                }
                o.member("resources", stats.resources)
                o.member("next_seq", stats.nextSeq)
                o.member("unmatched_stops", stats.unmatchedStops)
                o.member("duplicates", stats.duplicates)
                o.member("rejected") { r in
                    for (code, count) in stats.rejectedByCode.sorted(by: { $0.key < $1.key }) { r.member(code, count) }
                }
                o.member("pruned_events", stats.prunedEvents)
                o.member("watermark", stats.watermark?.rfc3339)
                o.member(
                    "rollup_lag_seconds",
                    json: stats.rollupLagMicroseconds.map { ExactDecimal.seconds(fromMicroseconds: Int128($0)) })
                o.member("rollup_in_progress_to", stats.rollupTarget?.rfc3339)
                o.member("horizon", stats.horizon?.rfc3339)
                o.member("snapshots_retained_from", stats.snapshotsRetainedFrom?.rfc3339)
                o.member("databases") { d in
                    for name in names {
                        guard let db = stats.databases[name] else { continue }
                        d.member(name) { e in
                            e.member("entries", db.entries)
                            e.member("bytes", db.bytes)
                            e.member("depth", db.depth)
                        }
                    }
                }
                o.member("map") { m in
                    m.member("size_bytes", stats.environment.mapSize)
                    m.member("used_bytes", stats.environment.usedBytes)
                    m.member("maximum_bytes", stats.environment.maximumMapSize)
                    m.member("page_size", stats.environment.pageSize)
                }
                o.member("space") { m in
                    m.member("file_bytes", stats.space.fileBytes)
                    m.member("free_bytes", stats.space.freeBytes)
                    m.member("compacted_copy_bytes", stats.space.compactedCopyBytes)
                    m.member("reclaimable_bytes", stats.space.reclaimableBytes)
                }
                o.member("readers") { r in
                    r.member("in_use", stats.environment.readersInUse)
                    r.member("maximum", stats.environment.maximumReaders)
                }
            },
            table: {
                print(
                    "format \(stats.formatVersion), \(stats.appendedEvents) events appended over its life, "
                        + "\(stats.storedEvents) stored, \(stats.resources) resources, next seq \(stats.nextSeq)"
                )
                let rejected = stats.rejectedByCode.sorted(by: { $0.key < $1.key }).map { "\($0.key) \($0.value)" }
                    .joined(
                        separator: ", ")
                print(
                    "duplicates \(stats.duplicates), rejected \(rejected.isEmpty ? "none" : rejected), unmatched "
                        + "stops \(stats.unmatchedStops), pruned by compaction \(stats.prunedEvents)"
                )
                let lag =
                    stats.rollupLagMicroseconds.map { " (lag \(ExactDecimal.seconds(fromMicroseconds: Int128($0))) s)" }
                    ?? ""
                print(
                    "rollup watermark \(stats.watermark?.rfc3339 ?? "none")\(lag)"
                        + "\(stats.rollupTarget.map { ", rollup in progress to \($0)" } ?? ""), "
                        + "compaction horizon \(stats.horizon?.rfc3339 ?? "none"), "
                        + "snapshots from \(stats.snapshotsRetainedFrom?.rfc3339 ?? "the start")"
                )
                print(
                    "map: written up to \(stats.environment.usedBytes) of \(stats.environment.mapSize) bytes "
                        + "(maximum \(stats.environment.maximumMapSize)), readers \(stats.environment.readersInUse) "
                        + "of \(stats.environment.maximumReaders)"
                )
                let space = stats.space
                print(
                    "file \(space.fileBytes) bytes, \(space.freeBytes) on the free list (reused by later writes); "
                        + "a compacted copy (backup --compact) would write \(space.compactedCopyBytes) and give back "
                        + "\(space.reclaimableBytes)\n"
                )
                var kinds = TextTable("KIND", "APPENDED", rightAligned: [1])
                for kind in EventKind.allCases { kinds.add(kind.rawValue, String(stats.eventsByKind[kind] ?? 0)) }
                print(kinds.rendered + "\n")
                var dbs = TextTable("DATABASE", "ENTRIES", "BYTES", "DEPTH", rightAligned: [1, 2, 3])
                for name in names {
                    guard let db = stats.databases[name] else { continue }
                    dbs.add(name, String(db.entries), String(db.bytes), String(db.depth))
                }
                print(dbs.rendered)
            })
    }
}

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a consistent copy of the ledger while appends continue.")
    @OptionGroup var ledger: LedgerArguments
    @Option(
        help: ArgumentHelp("The directory to write the copy into (created; must hold no ledger).", valueName: "PATH"))
    var to: String
    @Flag(help: "Leave free pages out of the copy (smaller, slower).") var compact = false

    func run() throws {
        let source = try ledger.open(readOnly: true)
        // LMDB's copy reports no progress of its own: say what is under way while it runs, on a terminal only.
        let showProgress = isTerminal(standardError: true)
        if showProgress {
            writeError("backing up \(try source.statistics().environment.usedBytes / 1_048_576) MiB to \(to)...")
        }
        try source.backup(to: to, compacting: compact)
        if showProgress { writeError("\r\u{1B}[K") }
        ledger.printResult(
            json: { o in
                o.member("backup", to)
                o.member("compacted", compact)
            },
            table: {
                print("backup written to \(to)")
            })
    }
}
