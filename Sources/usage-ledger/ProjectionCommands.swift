import ArgumentParser
import UsageLedger

// Not `@retroactive`: the type is declared in this package, and the compiler refuses the attribute.
extension UsageGranularity: ExpressibleByArgument {}

extension UsageChart.Stack: ExpressibleByArgument {}

/// What `usage --group-by` splits rows by.
enum UsageGrouping: String, ExpressibleByArgument, CaseIterable {
    case resource
}

struct Current: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List running resources and the totals per meter.")
    @OptionGroup var ledger: LedgerArguments
    @Option(help: "Only this owner.") var owner: String?
    @Option(help: "Only this resource type.") var type: String?

    func run() throws {
        let current = try ledger.open(readOnly: true).currentUsage(owner: owner, type: type)
        ledger.printResult(
            json: { o in
                o.member("running", current.runningCount)
                o.member("totals") { t in
                    for name in current.totals.keys.sorted() { t.member(name, String(current.totals[name] ?? 0)) }
                }
                o.arrayMember("resources") { a in
                    for status in current.resources { a.element { writeStatus(status, into: &$0) } }
                }
            },
            table: {
                var table = TextTable("RESOURCE", "OWNER", "RUN_STARTED_AT", "FOOTPRINT_SINCE", "FOOTPRINT")
                for status in current.resources {
                    table.add(
                        status.resource.description, status.owner, status.runStartedAt?.rfc3339 ?? "",
                        status.footprintSince?.rfc3339 ?? "",
                        status.footprint.map { "\($0.name)=\($0.value)" }.joined(separator: " "))
                }
                print(table.rendered)
                let totals = current.totals.keys.sorted().map { "\($0)=\(current.totals[$0] ?? 0)" }.joined(
                    separator: " ")
                print("\n\(current.runningCount) running" + (totals.isEmpty ? "" : "; totals: \(totals)"))
            })
    }
}

/// Writes one resource's status as the members of a JSON object.
func writeStatus(_ status: ResourceStatus, into o: inout JSONWriter.ObjectWriter) {
    o.member("type", status.resource.type)
    o.member("id", status.resource.id)
    o.member("owner", status.owner)
    o.member("running", status.running)
    if let at = status.runStartedAt { o.member("run_started_at", at.rfc3339) }
    if let at = status.footprintSince { o.member("footprint_since", at.rfc3339) }
    o.member("footprint") { f in for (name, value) in status.footprint { f.member(name, value) } }
    o.member("attributes") { a in for (key, value) in status.attributes { a.member(key, value) } }
}

struct Usage: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exact usage of an owner or a resource over [from, to), capped at now.",
        discussion:
            "Amounts are exact decimal strings: running_seconds, METER_seconds (footprint meter × seconds), and "
            + "adjustment sums."
    )
    @OptionGroup var ledger: LedgerArguments
    @Option(help: "Every resource of this owner.") var owner: String?
    @Option(help: ArgumentHelp("One resource, as TYPE/ID.", valueName: "TYPE/ID")) var resource: String?
    @Option(help: "Start, RFC 3339 (inclusive).") var from: String
    @Option(help: "End, RFC 3339 (exclusive).") var to: String
    @Option(help: "The length of each row's period.") var granularity: UsageGranularity = Ledger.defaultUsageGranularity
    @Option(
        help: ArgumentHelp(
            "The zone whose calendar days, months (and hours, in zones off the whole hour) follow: an IANA name "
                + "such as Europe/Berlin, or an offset such as +05:30.", valueName: "ZONE"))
    var timeZone: String = "UTC"
    @Option(help: "'resource' to split by resource.") var groupBy: UsageGrouping?
    @Option(help: "The ledger's clock as RFC 3339 (usage is capped here).") var now: String?
    @Option(
        help: ArgumentHelp("Also draw the usage over time as stacked bars into this SVG file.", valueName: "FILE.svg"))
    var chart: String?
    @Option(help: "What the chart stacks: resource (one meter; the default with --group-by resource) or meter.")
    var chartStack: UsageChart.Stack?
    @Option(
        help: ArgumentHelp(
            "The meter a chart stacked by resource shows: running (the default), a footprint meter or an adjustment "
                + "meter."))
    var chartMeter: String = "running"

    func run() throws {
        let subject: UsageSubject
        switch (owner, resource) {
        case (let owner?, nil): subject = .owner(owner)
        case (nil, let text?): subject = .resource(try parseResource(text))
        default: throw ValidationError("give exactly one of --owner and --resource")
        }
        let start = try parseTime(from, "--from"), end = try parseTime(to, "--to")
        let zone = try UsageTimeZone(timeZone)
        let stack = chartStack ?? (groupBy == .resource ? .resource : .meter)
        let report = try ledger.open(readOnly: true, now: try parseNow(now)).usage(
            subject, from: start, to: end, granularity: granularity, timeZone: zone, groupByResource: groupBy != nil)
        if let chart {
            let who = owner.map { "owner \($0)" } ?? "resource \(resource ?? "")"
            let what = stack == .meter ? "by meter" : "\(chartMeter) by resource"
            let title =
                "usage of \(who): \(what), \(report.from.rfc3339(in: zone)) to \(report.to.rfc3339(in: zone)) by "
                + granularity.rawValue + (zone == .utc ? "" : " (\(zone))")
            try UsageChart(report: report, stack: stack, meter: chartMeter, title: title)
                .write(to: chart)
        }
        ledger.printResult(
            json: { o in
                o.member("from", report.from.rfc3339)
                o.member("to", report.to.rfc3339)
                o.member("granularity", granularity.rawValue)
                // Said only off UTC, so that the answers of earlier builds stay byte for byte the same.
                if zone != .utc { o.member("time_zone", zone.identifier) }
                o.arrayMember("rows") { a in for row in report.rows { a.element { writeUsageRow(row, into: &$0) } } }
            },
            table: {
                var table = TextTable(
                    "PERIOD_START", "PERIOD_END", "RESOURCE", "RUNNING_SECONDS", "USAGE", "ADJUSTMENTS",
                    rightAligned: [3])
                for row in report.rows {
                    let meters = row.amounts.meterMicroseconds
                    let usage = meters.keys.sorted().map {
                        "\($0)_seconds=\(ExactDecimal.seconds(fromMicroseconds: meters[$0] ?? 0))"
                    }.joined(separator: " ")
                    let adjustments = row.amounts.adjustments.keys.sorted().map {
                        "\($0)=\(row.amounts.adjustments[$0] ?? 0)"
                    }.joined(separator: " ")
                    table.add(
                        row.periodStart.rfc3339(in: zone), row.periodEnd.rfc3339(in: zone),
                        row.resource?.description ?? "",
                        ExactDecimal.seconds(fromMicroseconds: row.amounts.runningMicroseconds), usage, adjustments)
                }
                print(table.rendered)
            })
    }
}

/// Writes one usage row as the members of a JSON object.
func writeUsageRow(_ row: UsageRow, into o: inout JSONWriter.ObjectWriter) {
    o.member("period_start", row.periodStart.rfc3339)
    o.member("period_end", row.periodEnd.rfc3339)
    if let resource = row.resource { o.member("resource", resource.description) }
    o.member("running_seconds", ExactDecimal.seconds(fromMicroseconds: row.amounts.runningMicroseconds))
    o.member("usage") { u in
        for name in row.amounts.meterMicroseconds.keys.sorted() {
            let seconds = ExactDecimal.seconds(fromMicroseconds: row.amounts.meterMicroseconds[name] ?? 0)
            u.member("\(name)_seconds", seconds)
        }
    }
    o.member("adjustments") { a in
        for name in row.amounts.adjustments.keys.sorted() { a.member(name, String(row.amounts.adjustments[name] ?? 0)) }
    }
}

struct Rollup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Materialize hourly snapshots up to floor_to_hour(now - grace); idempotent.")
    @OptionGroup var ledger: LedgerArguments
    @Option(help: "The ledger's clock as RFC 3339.") var now: String?
    @Option(help: "Seconds an hour stays open for late events.")
    var graceSeconds: Int64 = Ledger.defaultRollupGraceMicroseconds / Timestamp.microsecondsPerSecond
    @Option(help: "Running resources per write transaction.") var batchSize: Int = Ledger.defaultRollupBatchSize

    func run() throws {
        let maximumGraceSeconds = Ledger.maximumRollupGraceMicroseconds / Timestamp.microsecondsPerSecond
        guard (0...maximumGraceSeconds).contains(graceSeconds) else {
            throw ValidationError("--grace-seconds must be 0 to one year")
        }
        let summary = try ledger.open(now: try parseNow(now))
            .rollUp(graceMicroseconds: graceSeconds * Timestamp.microsecondsPerSecond, batchSize: batchSize)
        ledger.printResult(
            json: { o in
                o.member("watermark", summary.watermark.rfc3339)
                o.member("previous_watermark", summary.previousWatermark?.rfc3339)
                o.member("resources_rolled", summary.resourcesRolled)
                o.member("resource_hours", summary.resourceHours)
                o.member("rows_written", summary.rowsWritten)
                o.member("spans_begun", summary.spansBegun)
                o.member("spans_extended", summary.spansExtended)
            },
            table: {
                print(
                    "watermark \(summary.watermark) (was \(summary.previousWatermark?.rfc3339 ?? "none")): "
                        + "\(summary.resourcesRolled) resources, \(summary.resourceHours) resource-hours in "
                        + "\(summary.rowsWritten) rows, \(summary.spansBegun) spans begun, "
                        + "\(summary.spansExtended) extended"
                )
            })
    }
}

struct Reconcile: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Append one adjustment that makes a resource's meter sums equal reported cumulative totals; idempotent "
            + "by --key."
    )
    @OptionGroup var ledger: LedgerArguments
    @Option(help: ArgumentHelp("The resource, as TYPE/ID.", valueName: "TYPE/ID")) var resource: String
    @Option(help: "The resource's owner.") var owner: String
    @Option(help: #"Reported totals as JSON, e.g. '{"network_bytes":123}'."#) var totals: String
    @Option(help: "When the totals were read, RFC 3339.") var at: String
    @Option(help: "Idempotency key: a retry with the same key appends nothing more.") var key: String
    @Option(help: "The ledger's clock as RFC 3339.") var now: String?

    func run() throws {
        let id = try parseResource(resource)
        let reported: Meters
        do {
            guard case .object(let members) = try JSONParser.parse(totals) else {
                throw ValidationError("--totals must be a JSON object")
            }
            var pairs: [(String, Int64)] = []
            for member in members {
                guard case .number(let text) = member.value else {
                    throw ValidationError("--totals: \(member.key) must be an integer")
                }
                pairs.append((member.key, try EventJSON.integer(text, field: "totals.\(member.key)")))
            }
            reported = Meters(pairs)
        } catch let error as JSONSyntaxError {
            throw ValidationError("--totals is not JSON: \(error.reason) at byte \(error.offset + 1)")
        }
        let outcome = try ledger.open(create: true, now: try parseNow(now))
            .reconcile(resource: id, owner: owner, reportedTotals: reported, at: try parseTime(at, "--at"), key: key)
        var writer = JSONWriter()
        writer.object { o in
            switch outcome {
            case .appended(let seq, let deltas):
                o.member("outcome", "appended")
                o.member("seq", seq)
                o.member("deltas") { d in for (name, value) in deltas { d.member(name, value) } }
            case .alreadyRecorded(let seq):
                o.member("outcome", "already_recorded")
                o.member("seq", seq)
            case .nothingToDo:
                o.member("outcome", "nothing_to_do")
            }
        }
        print(writer.text)
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild every projection from the log in memory and compare; exit status 1 on any difference.")
    @OptionGroup var ledger: LedgerArguments

    func run() throws {
        // The structure is checked before any database is opened: a damaged file must not be read.
        let report = try ledger.open(readOnly: true, checkingStructure: true).verify()
        ledger.printResult(
            json: { o in
                o.member("consistent", report.isConsistent)
                o.member("pages_checked", report.pagesChecked)
                o.member("resources_checked", report.resourcesChecked)
                o.member("events_replayed", report.eventsReplayed)
                o.member("differences", report.differenceCount)
                o.arrayMember("first_differences") { a in
                    for difference in report.differences { a.element(difference) }
                }
            },
            table: {
                print(
                    report.isConsistent
                        ? "consistent: \(report.pagesChecked) pages, \(report.resourcesChecked) "
                            + "resources, \(report.eventsReplayed) events replayed"
                        : "\(report.differenceCount) differences; the first:\n"
                            + report.differences.map { "  " + $0 }.joined(separator: "\n"))
            })
        if !report.isConsistent {
            for difference in report.differences { printError("verify: \(difference)") }
            throw CommandExit(status: .differences)
        }
    }
}

struct Rebuild: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Rewrite every projection from the log.")
    @OptionGroup var ledger: LedgerArguments

    func run() throws {
        let showProgress = isTerminal(standardError: true)
        // One transaction, whose body may run again if the map grows: it reports nothing until it commits.
        if showProgress { writeError("\rrebuilding the projections from the log") }
        let summary = try ledger.open().rebuild()
        if showProgress { writeError("\r\u{1B}[K") }
        ledger.printResult(
            json: { o in
                o.member("resources", summary.resources)
                o.member("events", summary.events)
                o.member("hourly_rows", summary.hourlyRows)
            },
            table: {
                print(
                    "rebuilt: \(summary.resources) resources, \(summary.events) events, "
                        + "\(summary.hourlyRows) hourly rows")
            })
    }
}
