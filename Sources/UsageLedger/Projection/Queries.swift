import LMDBStorage
import LedgerCore

/// The current state of one resource.
public struct ResourceStatus: Sendable, Equatable {
    /// The resource.
    public var resource: ResourceID
    /// Its owner.
    public var owner: String
    /// Whether it runs now.
    public var running: Bool
    /// The first beginning of the current run.
    public var runStartedAt: Timestamp?
    /// The latest beginning of the current run: the footprint applies since then.
    public var footprintSince: Timestamp?
    /// The current footprint (empty when not running).
    public var footprint: Meters
    /// The attributes of the latest beginning.
    public var attributes: Attributes

    init(_ state: ResourceState) {
        resource = state.resource
        owner = state.owner
        running = state.running
        runStartedAt = state.runStartedAt
        footprintSince = state.footprintSince
        footprint = state.footprint
        attributes = state.attributes
    }
}

/// What runs now, and the sum of its footprints.
public struct CurrentUsage: Sendable, Equatable {
    /// The running resources, by owner, type and id.
    public var resources: [ResourceStatus]
    /// How many resources run.
    public var runningCount: Int
    /// The sum of each footprint meter over the running resources (a meter no running resource has is absent).
    public var totals: [String: Int128]
    /// The `seq` of the newest event this answer reflects (0 when the log is empty): read in the same
    /// snapshot, so a feed consumer that rebuilds its view from this answer continues with
    /// `events(after: asOfSeq, ...)` and sees every later event exactly once.
    public var asOfSeq: UInt64 = 0
}

/// Whose usage a query asks for.
public enum UsageSubject: Sendable, Hashable {
    /// Every resource of one owner.
    case owner(String)
    /// One resource.
    case resource(ResourceID)
}

/// How a usage answer is split in time, in the query's time zone (UTC unless given).
public enum UsageGranularity: String, Sendable, CaseIterable {
    /// One period: the whole interval.
    case total
    /// Hours: UTC hours, which are local hours in every zone whose offset is a whole number of hours; in
    /// other zones (`Asia/Kolkata`, `+05:30`) hours from local `:00`, split exactly.
    case hour
    /// Days from local midnight to local midnight (23 or 25 hours on days when clocks change).
    case day
    /// Calendar months from local midnight of the first.
    case month
}

/// Usage in one period (and of one resource, when grouped by resource).
public struct UsageRow: Sendable, Equatable {
    /// The start of the period (inclusive), never before the query's `from`.
    public var periodStart: Timestamp
    /// The end of the period (exclusive), never after the query's end.
    public var periodEnd: Timestamp
    /// The resource, when grouped by resource.
    public var resource: ResourceID?
    /// The usage.
    public var amounts: UsageAmounts
}

/// The answer to a usage query.
public struct UsageReport: Sendable, Equatable {
    /// The start asked for.
    public var from: Timestamp
    /// The end of the answer: the end asked for, or the ledger's clock when that is earlier (no usage in
    /// the future).
    public var to: Timestamp
    /// Periods with usage, by period start, then resource. With `.total` and no grouping there is always
    /// exactly one row.
    public var rows: [UsageRow]
    /// The granularity asked for.
    public var granularity: UsageGranularity = .total
    /// The zone whose calendar the periods follow.
    public var timeZone: UsageTimeZone = .utc

    /// Every period of the answer, with usage or without, in order (one for `.total`).
    public func periods() throws(LedgerError) -> [(start: Timestamp, end: Timestamp)] {
        guard from < to else { return [(from, to)] }
        let buckets = try UsageBuckets(from: from, end: to, granularity: granularity, zone: timeZone)
        return buckets.starts(from: from.microseconds).map { start in
            (max(Timestamp(microseconds: start), from), Timestamp(microseconds: buckets.end(ofPeriodStarting: start)))
        }
    }
}

extension Ledger {
    /// What runs now for an owner (or everyone) and a type (or every type), with footprint totals kept per
    /// owner and type, so that totals do not scan resources. With `listingResources` false only the count
    /// and totals are read (a few keys, whatever the number of running resources).
    public func currentUsage(owner: String? = nil, type: String? = nil, listingResources: Bool = true)
        throws(LedgerError) -> CurrentUsage
    {
        try read { txn in
            var totals: [String: Int128] = [:]
            var runningCount = 0
            let totalsPrefix = owner.map { ProjectionFormat.ownerKey($0, type: type) } ?? []
            let exactTotalsKey = owner != nil && type != nil
            try scan(schema.ownerTotals, prefix: totalsPrefix, in: txn) { key, value in
                if exactTotalsKey && key.count != totalsPrefix.count { return }
                if owner == nil, let type {
                    let parts = Array(key).split(separator: 0, omittingEmptySubsequences: false)
                    guard parts.count == 2, String(decoding: parts[1], as: UTF8.self) == type else { return }
                }
                let entry = try OwnerTotalsCodec.decode(value)
                runningCount += Int(entry.running)
                for (name, meter) in entry.meters { totals[name] = try checkedAdd(totals[name] ?? 0, meter.sum, name) }
            }
            var resources: [ResourceStatus] = []
            let asOfSeq = (try txn.get(Meta.nextSeq, in: schema.meta) ?? 1) &- 1
            guard listingResources else {
                return CurrentUsage(resources: [], runningCount: runningCount, totals: totals, asOfSeq: asOfSeq)
            }
            let runningPrefix =
                owner.map { ProjectionFormat.ownerKey($0, type: type).appendingSeparator(if: type != nil) } ?? []
            try scan(schema.running, prefix: runningPrefix, in: txn) { _, value in
                let number = try BigEndianUInt64.decode(value)
                guard let state = try txn.get(schema.resourceState, number) else {
                    throw LedgerError.corrupt(reason: "running resource \(number) has no state")
                }
                if owner == nil, let type, state.resource.type != type { return }
                resources.append(ResourceStatus(state))
            }
            return CurrentUsage(resources: resources, runningCount: runningCount, totals: totals, asOfSeq: asOfSeq)
        }
    }

    /// The current state of one resource, or nil when the ledger has never seen it.
    public func status(of resource: ResourceID) throws(LedgerError) -> ResourceStatus? {
        try read { txn in
            guard let number = try resourceNumber(resource, in: txn),
                let state = try txn.get(schema.resourceState, number)
            else { return nil }
            return ResourceStatus(state)
        }
    }

    /// Exact usage of an owner or a resource in [from, to), capped at the ledger's clock.
    ///
    /// Whole hours come from the hourly rows (plus running resources' usage not yet rolled up); the partial
    /// hours at either end are folded from the log. The cost grows with the rows returned and the hours
    /// asked for, not with the size of the ledger: an owner query reads only that owner's keys.
    ///
    /// Periods follow the calendar of `timeZone`: days and months begin at local midnight, and in a zone
    /// off the whole hour hours begin at local `:00`; an hour a period boundary cuts is folded from the
    /// log in exact parts (`docs/semantics.md`).
    ///
    /// - Throws: `LedgerError.invalidArgument` when `from` is after `to`, or the range holds more than
    ///   5,000,000 periods of a zone's calendar; `LedgerError.outsideRetention` for hours that retention
    ///   dropped, or a part of an hour before the compaction horizon.
    public func usage(
        _ subject: UsageSubject, from: Timestamp, to: Timestamp,
        granularity: UsageGranularity = Ledger.defaultUsageGranularity, timeZone: UsageTimeZone = .utc,
        groupByResource: Bool = false
    ) throws(LedgerError) -> UsageReport {
        guard from <= to else { throw .invalidArgument(reason: "from (\(from)) is after to (\(to))") }
        let end = min(to, options.clock.now())
        let buckets = try UsageBuckets(from: from, end: max(end, from), granularity: granularity, zone: timeZone)
        let query = UsageQuery(
            subject: subject, from: from, end: end, buckets: buckets, groupByResource: groupByResource)
        var collected: [BucketKey: UsageAmounts] = [:]
        if from < end {
            collected = try read { txn in try collectUsage(query, in: txn) }
        }
        if granularity == .total, !groupByResource, collected.isEmpty {
            collected[BucketKey(start: from.microseconds, resource: nil)] = UsageAmounts()
        }
        let rows = collected.map { key, amounts -> UsageRow in
            let periodStart = max(Timestamp(microseconds: key.start), from)
            let periodEnd = Timestamp(microseconds: buckets.end(ofPeriodStarting: key.start))
            return UsageRow(
                periodStart: periodStart, periodEnd: max(periodEnd, periodStart), resource: key.resource,
                amounts: amounts)
        }.sorted { ($0.periodStart, $0.resource?.description ?? "") < ($1.periodStart, $1.resource?.description ?? "") }
        return UsageReport(
            from: from, to: max(end, from), rows: rows, granularity: granularity, timeZone: timeZone)
    }

    /// Sums the subject's usage into buckets, inside one read transaction (one consistent snapshot).
    private func collectUsage(_ query: UsageQuery, in txn: borrowing ReadTransaction) throws -> [BucketKey:
        UsageAmounts]
    {
        let span = UsageSpan(
            from: query.from, end: query.end, splits: query.buckets.unalignedStarts(after: query.from.microseconds))
        guard let (owner, unmaterialized) = try unmaterializedResources(query, span, in: txn) else { return [:] }
        try checkRetention(query, span, in: txn)
        var buckets: [BucketKey: UsageAmounts] = [:]
        // Steady spans of the subject, needed unless owner_hourly answers (an owner's ungrouped whole hours).
        // Only the spans sharing an hour with the range are decoded: an owner's history can hold thousands.
        let hours =
            query.from.hourFloor.microseconds..<(query.end.hourFloor.microseconds + Timestamp.microsecondsPerHour)
        // An owner's ungrouped usage needs no spans: whole hours come from owner_hourly, and the steady part
        // of a partial hour is its owner sum less its rows.
        let steady =
            query.isUngroupedOwner ? [] : try subjectSpans(query.subject, owner: owner, overlapping: hours, in: txn)
        if span.firstWhole <= span.lastWhole {
            try addWholeHours(query, span, owner: owner, to: &buckets, in: txn)
            if !query.isUngroupedOwner { try addSteadyHours(steady, query, span, to: &buckets) }
            try addUnmaterialized(unmaterialized, query, span, to: &buckets, in: txn)
        }
        try addPartialHours(
            query, span, owner: owner, unmaterialized: unmaterialized, steady: steady, to: &buckets, in: txn)
        return buckets
    }

    /// The subject's owner, and the resources whose rows may stop before the range ends (running ones, and
    /// those with events after their checkpoint): their usage after the checkpoint is folded from it. Nil
    /// for a resource the ledger has never seen.
    private func unmaterializedResources(_ query: UsageQuery, _ span: UsageSpan, in txn: borrowing ReadTransaction)
        throws -> (String, [UInt64: ResourceState])?
    {
        var unmaterialized: [UInt64: ResourceState] = [:]
        switch query.subject {
        case .owner(let name):
            for index in [schema.running, schema.pending] {
                try scan(index, prefix: ProjectionFormat.ownerKey(name), in: txn) { _, value in
                    let number = try BigEndianUInt64.decode(value)
                    guard unmaterialized[number] == nil, let stored = try txn.rawGet(schema.resourceState, number)
                    else { return }
                    // Without partial hours, a resource rolled up past the range is not needed: read only its
                    // checkpoint (an owner can have thousands running, and a full decode is most of the cost).
                    if span.edges.isEmpty,
                        try ProjectionFormat.checkpoint(ofState: stored).microseconds >= span.lastWhole
                    {
                        return
                    }
                    unmaterialized[number] = try ProjectionFormat.decodeState(stored)
                }
            }
            return (name, unmaterialized)
        case .resource(let resource):
            guard let number = try resourceNumber(resource, in: txn),
                let state = try txn.get(schema.resourceState, number)
            else { return nil }
            unmaterialized[number] = state
            return (state.owner, unmaterialized)
        }
    }

    /// Refuses a range reaching before the retained snapshots, or a partial hour before the horizon.
    private func checkRetention(_ query: UsageQuery, _ span: UsageSpan, in txn: borrowing ReadTransaction) throws {
        if let retained = try txn.get(Meta.snapshotsRetainedFrom, in: schema.meta), query.from < retained {
            throw LedgerError.outsideRetention(
                reason:
                    "usage before \(retained) is gone: snapshot retention dropped those hours; ask from \(retained) on")
        }
        if let horizon = try txn.get(Meta.horizon, in: schema.meta),
            let edge = span.edges.first(where: { $0.0 < horizon })
        {
            throw LedgerError.outsideRetention(
                reason:
                    "before the compaction horizon \(horizon) usage is kept per whole hour only; \(edge.0) "
                    + "to \(edge.1) is part of an hour: align from and to to whole hours there"
            )
        }
    }

    /// Adds the stored rows of every whole hour of the range.
    private func addWholeHours(
        _ query: UsageQuery, _ span: UsageSpan, owner: String, to buckets: inout [BucketKey: UsageAmounts],
        in txn: borrowing ReadTransaction
    ) throws {
        var hour = span.firstWhole
        while hour < span.lastWhole {
            defer { hour += Timestamp.microsecondsPerHour }
            if span.splitHours.contains(hour) { continue }
            if query.isUngroupedOwner {
                // Ungrouped: the hour's rows go into one bucket, and owner_hourly holds their sum.
                if let stored = try txn.get(schema.ownerHourly, OwnerHour(hour: hour, owner: owner)) {
                    try buckets[query.bucket(hour, nil), default: .init()].add(stored.amounts)
                }
            } else {
                try rows(of: query.subject, owner: owner, hour: hour, in: txn) { resource, amounts in
                    try buckets[query.bucket(hour, resource), default: .init()].add(amounts)
                }
            }
        }
    }

    /// The stored spans of the subject: one resource's, or every resource's of the owner.
    private func subjectSpans(
        _ subject: UsageSubject, owner: String, overlapping range: Range<Int64>, in txn: borrowing ReadTransaction
    ) throws -> [(resource: ResourceID, span: SteadySpan)] {
        switch subject {
        case .owner: return try storedSpans(prefix: ProjectionFormat.ownerKey(owner), overlapping: range, in: txn)
        case .resource(let resource):
            let prefix = SteadySpanKeyCodec.prefix(owner: owner, resource: resource)
            return try storedSpans(prefix: prefix, overlapping: range, in: txn)
        }
    }

    /// Adds the steady hours inside the whole hours of the range: each hour is one row's worth, derived from
    /// its span, and hours that fall into one bucket are added at once.
    private func addSteadyHours(
        _ spans: [(resource: ResourceID, span: SteadySpan)], _ query: UsageQuery, _ range: UsageSpan,
        to buckets: inout [BucketKey: UsageAmounts]
    ) throws {
        for (resource, stored) in spans {
            guard let span = stored.clipped(from: range.firstWhole, until: range.lastWhole) else { continue }
            let hourAmounts = try SteadySpan.hourAmounts(span.footprint)
            var hour = span.start
            while hour < span.end {
                let bucket = query.bucket(hour, resource)
                var count: Int64 = 0
                while hour < span.end, query.bucket(hour, resource) == bucket {
                    if !range.splitHours.contains(hour) { count += 1 }
                    hour += Timestamp.microsecondsPerHour
                }
                if count > 0 { try buckets[bucket, default: .init()].add(try hourAmounts.times(count)) }
            }
        }
    }

    /// Adds the usage not yet in rows: folded from each such resource's checkpoint to the last whole hour.
    private func addUnmaterialized(
        _ unmaterialized: [UInt64: ResourceState], _ query: UsageQuery, _ span: UsageSpan,
        to buckets: inout [BucketKey: UsageAmounts], in txn: borrowing ReadTransaction
    ) throws {
        for (number, state) in unmaterialized where state.accruedUntil.microseconds < span.lastWhole {
            let entries = try timeline(resourceNumber: number, from: state.accruedUntil, in: txn)
            let fold = Fold.continuing(
                from: state.accruedUntil, running: state.checkpointRunning,
                footprint: state.checkpointFootprint, entries: entries)
            let hours = try Fold.hourly(
                fold, from: max(state.accruedUntil, Timestamp(microseconds: span.firstWhole)),
                until: Timestamp(microseconds: span.lastWhole))
            for (hour, amounts) in hours where !span.splitHours.contains(hour) {
                try buckets[query.bucket(hour, state.resource), default: .init()].add(amounts)
            }
        }
    }

    /// Adds the partial hours (at either end, and the parts of split hours). A resource with a row in the
    /// hour, or past its checkpoint there, is folded from its timeline (once per query). The others ran the
    /// whole hour steadily (a span's hour), so their part is their footprint times the part's length,
    /// exactly what the fold would give, without reading the log: from the spans, or for an owner's
    /// ungrouped usage from the hour's owner sum less its rows.
    private func addPartialHours(
        _ query: UsageQuery, _ span: UsageSpan, owner: String, unmaterialized: [UInt64: ResourceState],
        steady: [(resource: ResourceID, span: SteadySpan)], to buckets: inout [BucketKey: UsageAmounts],
        in txn: borrowing ReadTransaction
    ) throws {
        var folds: [ResourceID: FoldResult] = [:]
        for (start, stop) in span.edges {
            var candidates: [ResourceID: UInt64?] = [:]
            let hour = start.hourFloor.microseconds
            var steadyHours =
                query.isUngroupedOwner ? try txn.get(schema.ownerHourly, OwnerHour(hour: hour, owner: owner)) : nil
            try rows(of: query.subject, owner: owner, hour: hour, in: txn) { resource, amounts in
                candidates[resource] = .some(nil)
                try steadyHours?.add(amounts, sign: -1)
            }
            for (number, state) in unmaterialized where state.accruedUntil < stop {
                candidates[state.resource] = number
            }
            let bucket = { (resource: ResourceID?) in query.bucket(start.microseconds, resource) }
            let duration = stop.microseconds - start.microseconds
            if let steadyHours,
                let part = try Self.steadyPart(steadyHours, duration: duration, owner: owner, hour: hour)
            {
                try buckets[bucket(nil), default: .init()].add(part)
            }
            for (resource, stored) in steady where stored.start <= hour && hour < stored.end {
                guard candidates[resource] == nil else { continue }
                var amounts = UsageAmounts()
                try amounts.addRunning(footprint: stored.footprint, duration: duration)
                try buckets[bucket(resource), default: .init()].add(amounts)
            }
            for (resource, knownNumber) in candidates {
                if folds[resource] == nil {
                    guard let number = try knownNumber ?? resourceNumber(resource, in: txn) else { continue }
                    folds[resource] = try Fold.replay(
                        try timeline(resourceNumber: number, in: txn), resource: resource, owner: owner)
                }
                guard let fold = folds[resource] else { continue }
                let amounts = try Fold.usage(fold, from: start, to: stop)
                let ranThen = fold.segments.contains { $0.start < stop && ($0.end ?? stop) > start }
                if !amounts.isEmpty || ranThen { try buckets[bucket(resource), default: .init()].add(amounts) }
            }
        }
    }

    /// `duration` of an owner's steady hours of one hour: `hours` is the hour's owner sum less its rows, so
    /// it must be whole hours of running with whole-hour meters and no adjustment, one per resource.
    static func steadyPart(_ hours: OwnerRow, duration: Int64, owner: String, hour: Int64) throws(LedgerError)
        -> UsageAmounts?
    {
        if hours.rows == 0 && hours.running == 0 && hours.meters.items.isEmpty && hours.adjustments.items.isEmpty {
            return nil
        }
        let length = Int128(Timestamp.microsecondsPerHour)
        let (expected, overflow) = Int128(hours.rows).multipliedReportingOverflow(by: length)
        guard hours.rows > 0, !overflow, hours.running == expected, hours.adjustments.items.isEmpty,
            hours.meters.items.allSatisfy({ $0.count > 0 && $0.count <= hours.rows && $0.sum % length == 0 })
        else {
            throw .corrupt(
                reason: "owner_hourly of '\(owner)' at \(Timestamp(microseconds: hour)) is not its hourly rows plus "
                    + "whole steady hours")
        }
        var part = UsageAmounts()
        part.runningMicroseconds = Int128(hours.rows) * Int128(duration)
        for item in hours.meters.items {
            let (value, overflow) = (item.sum / length).multipliedReportingOverflow(by: Int128(duration))
            guard !overflow else { throw .overflow(field: "\(item.name)_seconds", reason: "usage exceeds 128 bits") }
            part.meterMicroseconds[item.name] = value
        }
        return part
    }

    /// Calls `visit` with the subject's hourly rows of one hour.
    private func rows(
        of subject: UsageSubject, owner: String, hour: Int64, in txn: borrowing ReadTransaction,
        _ visit: (ResourceID, UsageAmounts) throws -> Void
    ) throws {
        switch subject {
        case .owner:
            try scan(schema.hourly, prefix: ProjectionFormat.hourlyPrefix(hour: hour, owner: owner), in: txn) {
                key, value in
                try visit(try HourlyKeyCodec.decode(key).resource, try UsageAmountsCodec.decode(value))
            }
        case .resource(let resource):
            if let amounts = try txn.get(schema.hourly, HourlyKey(hour: hour, owner: owner, resource: resource)) {
                try visit(resource, amounts)
            }
        }
    }

    func resourceNumber(_ resource: ResourceID, in txn: borrowing some ReadableTransaction & ~Copyable) throws
        -> UInt64?
    {
        try txn.get(schema.resources, resource)?.number
    }

    /// Calls `visit` with the bytes of every entry whose key begins with `prefix` (encoded by the table's key
    /// codec), in key order; `visit` decodes what it needs with the table's codecs.
    func scan<K, V>(
        _ table: Table<K, V>, prefix: [UInt8], in txn: borrowing some ReadableTransaction & ~Copyable,
        _ visit: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let cursor = try txn.cursor(table)
        var entry = prefix.isEmpty ? try cursor.rawFirst() : try cursor.rawSeek(atLeastBytes: prefix)
        while let current = entry, current.key.hasPrefix(prefix) {
            try visit(current.key, current.value)
            entry = try cursor.rawNext()
        }
    }
}

/// A query range cut at whole hours: the whole hours come from rows, the partial `edges` are folded. A
/// period that begins inside an hour (`splits`: local midnights of a `+05:30` zone) splits that hour into
/// edges too, so that each part goes to its own period exactly.
struct UsageSpan {
    /// The start of the first whole hour in the range (µs).
    var firstWhole: Int64
    /// The start of the hour holding the range's end (µs): whole hours are `[firstWhole, lastWhole)`.
    var lastWhole: Int64
    /// The parts of hours folded from the log: those at either end (the whole range when it lies inside
    /// one hour) and those of the split hours, each cut at the splits inside it.
    var edges: [(Timestamp, Timestamp)] = []
    /// The whole hours that a split cuts: taken from `edges`, not from the rows.
    var splitHours: Set<Int64> = []

    init(from: Timestamp, end: Timestamp, splits: [Int64] = []) {
        let hourLength = Timestamp.microsecondsPerHour
        firstWhole = from.hourFloor == from ? from.microseconds : from.hourFloor.microseconds + hourLength
        lastWhole = end.hourFloor.microseconds
        var pieces: [(Int64, Int64)] = []
        if firstWhole > lastWhole {
            pieces.append((from.microseconds, end.microseconds))
        } else {
            if from.microseconds < firstWhole { pieces.append((from.microseconds, firstWhole)) }
            for split in splits where split > firstWhole && split < lastWhole {
                let hour = split - ((split % hourLength) + hourLength) % hourLength
                if splitHours.insert(hour).inserted { pieces.append((hour, hour + hourLength)) }
            }
            if lastWhole < end.microseconds { pieces.append((lastWhole, end.microseconds)) }
        }
        for (start, stop) in pieces {
            var cut = start
            for split in splits where split > start && split < stop {
                edges.append((Timestamp(microseconds: cut), Timestamp(microseconds: split)))
                cut = split
            }
            edges.append((Timestamp(microseconds: cut), Timestamp(microseconds: stop)))
        }
    }
}

struct BucketKey: Hashable {
    var start: Int64
    var resource: ResourceID?
}

/// A usage query's parameters, and how it assigns an hour (or the start of a part of one) to a period.
struct UsageQuery {
    var subject: UsageSubject
    var from: Timestamp
    var end: Timestamp
    var buckets: UsageBuckets
    var groupByResource: Bool

    /// An owner's usage summed over its resources: `owner_hourly` answers its whole hours.
    var isUngroupedOwner: Bool {
        if case .owner = subject { return !groupByResource }
        return false
    }

    func bucket(_ instant: Int64, _ resource: ResourceID?) -> BucketKey {
        BucketKey(start: buckets.start(containing: instant), resource: groupByResource ? resource : nil)
    }
}

extension Array where Element == UInt8 {
    /// Appends a 0x00 separator when `condition` holds (so that a type prefix does not match a longer type).
    func appendingSeparator(if condition: Bool) -> [UInt8] { condition ? self + [0] : self }
}
