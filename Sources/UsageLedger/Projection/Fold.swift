import LedgerCore

/// One event in a resource's timeline.
struct TimelineEntry {
    var seq: UInt64
    var event: UsageEvent
    var occurredAt: Timestamp { event.occurredAt }

    /// Timeline order: `occurred_at`, then `seq`.
    static func precedes(_ a: TimelineEntry, _ b: TimelineEntry) -> Bool {
        (a.occurredAt, a.seq) < (b.occurredAt, b.seq)
    }
}

/// A stretch of a run with one footprint: [start, end), or open when `end` is nil.
struct RunSegment: Equatable {
    var start: Timestamp
    var end: Timestamp?
    var footprint: Meters
}

/// What a resource's timeline folds to: its current state, its run segments and its adjustments.
struct FoldResult {
    var state: ResourceState
    var segments: [RunSegment] = []
    var adjustments: [(at: Timestamp, deltas: Meters)] = []
}

/// The current state of one resource, as its timeline folds.
struct ResourceState: Equatable {
    var resource: ResourceID
    var owner: String
    var running = false
    /// The first beginning of the current run.
    var runStartedAt: Timestamp?
    /// The latest beginning of the current run (the footprint applies from here).
    var footprintSince: Timestamp?
    var footprint = Meters()
    var attributes = Attributes()
    /// The latest `occurred_at` in the timeline.
    var lastOccurredAt = Timestamp.earliest
    /// Hourly rows hold this resource's usage (running time and adjustments) before this instant; rollup
    /// moves it forward.
    var accruedUntil = Timestamp.earliest
    /// Whether the resource was running at `accruedUntil` (after every event before it)...
    var checkpointRunning = false
    /// ...and with which footprint: where rollup and queries continue folding from.
    var checkpointFootprint = Meters()
    /// Stops that found the resource not running.
    var unmatchedStops: UInt64 = 0
    /// The sum of every adjustment delta, by meter.
    var adjustmentTotals: [String: Int128] = [:]

    /// Folds one event that comes after every event folded so far. Reports the run segment it closes.
    mutating func apply(_ event: UsageEvent, closing: (RunSegment) throws(LedgerError) -> Void) throws(LedgerError) {
        let t = event.occurredAt
        switch event.kind {
        case .started, .wasRunning:
            if running, let since = footprintSince {
                try closing(RunSegment(start: since, end: t, footprint: footprint))
            } else {
                running = true
                runStartedAt = t
            }
            footprintSince = t
            footprint = event.footprint ?? Meters()
            attributes = event.attributes
        case .stopped:
            if running, let since = footprintSince {
                try closing(RunSegment(start: since, end: t, footprint: footprint))
                running = false
                runStartedAt = nil
                footprintSince = nil
                footprint = Meters()
                attributes = Attributes()
            } else {
                unmatchedStops += 1
            }
        case .adjustment:
            for (name, value) in event.deltas ?? Meters() {
                adjustmentTotals[name] = try checkedAdd(adjustmentTotals[name] ?? 0, Int128(value), name)
            }
        }
        lastOccurredAt = max(lastOccurredAt, t)
    }

    /// The open segment of the current run, if running.
    var openSegment: RunSegment? {
        guard running, let since = footprintSince else { return nil }
        return RunSegment(start: since, end: nil, footprint: footprint)
    }
}

/// What a resource's pruned events carried that its state still needs: compaction removes old events
/// but keeps their sums here, so that replaying the remaining log from this base gives the same state.
struct CompactionBase: Equatable {
    var lastOccurredAt = Timestamp.earliest
    var unmatchedStops: UInt64 = 0
    var adjustmentTotals: [String: Int128] = [:]

    var isEmpty: Bool { self == CompactionBase() }
}

enum Fold {
    /// Folds a whole timeline (entries in timeline order), starting from what compaction kept of pruned events.
    static func replay(
        _ entries: [TimelineEntry], resource: ResourceID, owner: String,
        base: CompactionBase = CompactionBase()
    ) throws(LedgerError) -> FoldResult {
        var result = FoldResult(state: ResourceState(resource: resource, owner: owner))
        result.state.lastOccurredAt = base.lastOccurredAt
        result.state.unmatchedStops = base.unmatchedStops
        result.state.adjustmentTotals = base.adjustmentTotals
        for entry in entries {
            try result.state.apply(entry.event) { segment throws(LedgerError) in result.segments.append(segment) }
            if entry.event.kind == .adjustment, let deltas = entry.event.deltas {
                result.adjustments.append((entry.occurredAt, deltas))
            }
        }
        if let open = result.state.openSegment { result.segments.append(open) }
        return result
    }

    /// Usage in [from, until) split by UTC hour (running time clipped to it, adjustments inside it), keyed
    /// by the hour's start in microseconds.
    static func hourly(_ fold: FoldResult, from: Timestamp, until: Timestamp) throws(LedgerError) -> [Int64:
        UsageAmounts]
    {
        var hours: [Int64: UsageAmounts] = [:]
        for segment in fold.segments {
            try addRunning(segment, from: from, until: until, into: &hours)
        }
        for (at, deltas) in fold.adjustments where at >= from && at < until {
            try hours[at.hourFloor.microseconds, default: UsageAmounts()].addAdjustment(deltas)
        }
        return hours
    }

    /// Whether the resource runs, and with which footprint, after every entry before `instant`.
    static func checkpoint(_ fold: FoldResult, at instant: Timestamp) -> (running: Bool, footprint: Meters) {
        // A segment ending exactly at `instant` ends by an event at `instant`, which is not before it.
        for segment in fold.segments where segment.start < instant && (segment.end.map { $0 >= instant } ?? true) {
            return (true, segment.footprint)
        }
        return (false, Meters())
    }

    /// The segments and adjustments from a checkpoint on: `entries` are the timeline's entries at or after
    /// `from`, in timeline order; the run state at `from` is `running` with `footprint`.
    static func continuing(from: Timestamp, running: Bool, footprint: Meters, entries: [TimelineEntry]) -> FoldResult {
        var result = FoldResult(state: ResourceState(resource: ResourceID(type: "", id: ""), owner: ""))
        var isRunning = running, current = footprint, since = from
        for entry in entries {
            let t = entry.occurredAt
            switch entry.event.kind {
            case .started, .wasRunning:
                if isRunning { result.segments.append(RunSegment(start: since, end: t, footprint: current)) }
                isRunning = true
                current = entry.event.footprint ?? Meters()
                since = t
            case .stopped:
                if isRunning { result.segments.append(RunSegment(start: since, end: t, footprint: current)) }
                isRunning = false
            case .adjustment:
                if let deltas = entry.event.deltas { result.adjustments.append((t, deltas)) }
            }
        }
        if isRunning { result.segments.append(RunSegment(start: since, end: nil, footprint: current)) }
        return result
    }

    /// Adds `segment` clipped to [from, until) to per-hour amounts.
    static func addRunning(
        _ segment: RunSegment, from: Timestamp, until: Timestamp, into hours: inout [Int64: UsageAmounts]
    ) throws(LedgerError) {
        let start = max(segment.start.microseconds, from.microseconds)
        let end = min(segment.end?.microseconds ?? Int64.max, until.microseconds)
        guard start < end else { return }
        var hour = Timestamp(microseconds: start).hourFloor.microseconds
        while hour < end {
            let next = hour + Timestamp.microsecondsPerHour
            let duration = min(end, next) - max(start, hour)
            try hours[hour, default: UsageAmounts()].addRunning(footprint: segment.footprint, duration: duration)
            hour = next
        }
    }

    /// Exact usage in [from, to): open segments run to `to`.
    static func usage(_ fold: FoldResult, from: Timestamp, to: Timestamp) throws(LedgerError) -> UsageAmounts {
        var amounts = UsageAmounts()
        for segment in fold.segments {
            let start = max(segment.start, from)
            let end = min(segment.end ?? to, to)
            if start < end {
                try amounts.addRunning(footprint: segment.footprint, duration: end.microseconds - start.microseconds)
            }
        }
        for (at, deltas) in fold.adjustments where at >= from && at < to { try amounts.addAdjustment(deltas) }
        return amounts
    }
}
