import LMDBStorage
import LedgerCore

/// What happened to one event of an append.
public enum AppendOutcome: Sendable, Equatable {
    /// Recorded under a new `seq`.
    case appended(seq: UInt64)
    /// The same id with the same payload was already recorded under `seq`; nothing was written.
    case duplicate(seq: UInt64)
    /// Refused; nothing of this event was written.
    case rejected(LedgerError)

    /// The sequence number the event has in the log, when it has one.
    public var seq: UInt64? {
        switch self {
        case .appended(let seq), .duplicate(let seq): return seq
        case .rejected: return nil
        }
    }
}

/// The result of appending a batch: one outcome per submitted event, in submission order.
public struct AppendResult: Sendable, Equatable {
    /// One outcome per submitted event.
    public var outcomes: [AppendOutcome]
    /// Indexes of appended `stopped` events that found their resource not running (unmatched stops:
    /// stored, without effect on usage). Provisional: a late `started` that occurred before such a stop
    /// re-matches it when it arrives, and the stop then ends that run.
    public var unmatchedStops: [Int] = []

    /// How many events were newly recorded.
    public var appendedCount: Int { outcomes.count { if case .appended = $0 { true } else { false } } }
    /// How many were duplicates of recorded events.
    public var duplicateCount: Int { outcomes.count { if case .duplicate = $0 { true } else { false } } }
    /// The rejected events: their index in the batch and why.
    public var rejections: [(index: Int, error: LedgerError)] {
        outcomes.enumerated().compactMap { if case .rejected(let error) = $1 { ($0, error) } else { nil } }
    }
    /// The lowest `seq` assigned by this append, if any event was newly recorded.
    public var firstSeq: UInt64? {
        outcomes.lazy.compactMap { if case .appended(let seq) = $0 { seq } else { nil } }.first
    }
    /// The highest `seq` assigned by this append.
    public var lastSeq: UInt64? {
        outcomes.reversed().lazy.compactMap { if case .appended(let seq) = $0 { seq } else { nil } }.first
    }

    public static func == (lhs: AppendResult, rhs: AppendResult) -> Bool { lhs.outcomes == rhs.outcomes }
}

/// How group commit combined appends: see `Ledger.appendCommitCounts`.
public struct AppendCommitCounts: Sendable, Equatable {
    /// Write transactions that committed appends.
    public var transactions: Int
    /// `append(_:)` and `append(contentsOf:)` calls they committed.
    public var calls: Int
}

/// The receipt of a single accepted event.
public struct AppendReceipt: Sendable, Equatable {
    /// The event's place in the log.
    public var seq: UInt64
    /// Whether the event was already recorded (a retry), so that nothing was written.
    public var isDuplicate: Bool
}

extension Ledger {
    /// Appends one event.
    ///
    /// - Returns: its `seq`, and whether it was a duplicate of an event already recorded.
    /// - Throws: the rejection (`invalid_field`, `id_conflict`, `owner_mismatch`, `in_future`, ...) or a
    ///   failure of the ledger (`ledger_full`, `storage`).
    @discardableResult
    public func append(_ event: UsageEvent) throws(LedgerError) -> AppendReceipt {
        switch try append(contentsOf: [event]).outcomes[0] {
        case .appended(let seq): return AppendReceipt(seq: seq, isDuplicate: false)
        case .duplicate(let seq): return AppendReceipt(seq: seq, isDuplicate: true)
        case .rejected(let error): throw error
        }
    }

    /// Appends a batch: the accepted events commit together, each rejected one is reported with its index,
    /// and a duplicate is not an error.
    ///
    /// Concurrent calls from many threads are combined into one write transaction (group commit): while one
    /// commit runs, the calls that arrive queue up and commit together next, each applied as if appended on
    /// its own, in arrival order. A call returns once its events are durable; see `GroupCommit`.
    ///
    /// - Throws: only failures of the ledger itself (then nothing of the batch was written): `ledger_full`,
    ///   `storage`, `corrupt`, `read_only`, and `nested_transaction` when called on a thread that has a
    ///   transaction of this ledger open.
    public func append<C: Collection>(contentsOf events: C) throws(LedgerError) -> AppendResult
    where C.Element == UsageEvent {
        guard !options.readOnly else { throw .readOnly(path: path) }
        // A caller waiting inside a transaction would hold up the leader's map growth, and its own write.
        guard try !environment.hasTransactionOnCurrentThread else { throw .nestedTransaction }
        let now = options.clock.now()
        // Encoding and validation need no transaction: do them before queueing for the writer.
        let request = GroupCommit.Request(prepared: events.map { prepare($0, now: now) }, recordedAt: now)
        let started = monotonicNanoseconds()
        let result: AppendResult
        switch groupCommit.submit(request, commit: commitGroup) {
        case .success(let value): result = value
        case .failure(let error):
            logger.error(
                "append of \(request.prepared.count) events failed; nothing of the batch was written",
                metadata: ["code": "\(error.code)", "error": "\(error)"])
            throw error
        }
        // Counted after the commit: a metric never includes what a failed transaction rolled back.
        metrics.recordAppend(result, nanoseconds: monotonicNanoseconds() - started)
        recordMapMetrics()
        return result
    }

    /// Appends a group of requests in one write transaction, each as if on its own, in order.
    private func commitGroup(_ group: [GroupCommit.Request]) -> Result<[AppendResult], LedgerError> {
        do throws(LedgerError) {
            let results = try write { txn in
                try group.map { request in
                    try self.appendPrepared(request.prepared, recordedAt: request.recordedAt, in: txn)
                }
            }
            metrics.appendCommits.increment()
            return .success(results)
        } catch {
            return .failure(error)
        }
    }

    /// Write transactions that committed appends, and the `append` calls they held, since this `Ledger`
    /// was opened: the ratio is how many calls group commit combined per commit (and fsync).
    public var appendCommitCounts: AppendCommitCounts {
        let counts = groupCommit.counts
        return AppendCommitCounts(transactions: counts.groups, calls: counts.requests)
    }

    /// Validates an event against the rules and the clock (before the transaction: what needs no stored
    /// state is checked on the caller's thread).
    func prepare(_ event: UsageEvent, now: Timestamp) -> Result<UsageEvent, LedgerError> {
        do throws(LedgerError) {
            try EventRules.validate(event)
            if event.occurredAt.microseconds - now.microseconds > options.futureToleranceMicroseconds {
                throw .inFuture(
                    occurredAt: event.occurredAt, now: now, toleranceMicroseconds: options.futureToleranceMicroseconds)
            }
            return .success(event)
        } catch {
            return .failure(error)
        }
    }

    /// Appends prepared events in `txn`: the per-event outcomes in submission order. Rejections are values
    /// (`EventRejection`), decided before anything of their event is written; an error thrown here is a
    /// failure of the ledger and aborts the whole transaction, so a rejected event never leaves rows behind.
    func appendPrepared(
        _ prepared: [Result<UsageEvent, LedgerError>], recordedAt: Timestamp,
        in txn: borrowing WriteTransaction
    ) throws -> AppendResult {
        let meta = schema.meta
        var counters = try LogCounters(reading: txn, meta: meta)
        var context = try ProjectionContext(reading: txn, meta: meta)
        var names = LogNames(schema: schema)
        var result = AppendResult(outcomes: [])
        result.outcomes.reserveCapacity(prepared.count)
        for (index, item) in prepared.enumerated() {
            switch item {
            case .failure(let error):
                result.outcomes.append(.rejected(error))
            case .success(let event):
                switch try appendOne(
                    event, recordedAt: recordedAt, counters: &counters, context: &context, names: &names, in: txn)
                {
                case .recorded(let outcome, let unmatched):
                    result.outcomes.append(outcome)
                    if unmatched { result.unmatchedStops.append(index) }
                case .rejected(let rejection):
                    result.outcomes.append(.rejected(rejection.error))
                }
            }
        }
        for outcome in result.outcomes { counters.count(outcome) }
        try counters.write(to: txn, meta: meta)
        try context.write(to: txn, schema: schema)
        return result
    }

    /// What appending one event did: recorded (new or duplicate), or rejected before any write.
    private enum EventAppend {
        case recorded(AppendOutcome, unmatchedStop: Bool)
        case rejected(EventRejection)
    }

    private func appendOne(
        _ event: UsageEvent, recordedAt: Timestamp, counters: inout LogCounters,
        context: inout ProjectionContext, names: inout LogNames, in txn: borrowing WriteTransaction
    ) throws -> EventAppend {
        if let seq = try txn.get(schema.eventIDs, event.id) {
            let same = try isStored(event, at: seq, names: &names, in: txn)
            guard same else { return .rejected(EventRejection(.idConflict(id: event.id, existingSeq: seq))) }
            return .recorded(.duplicate(seq: seq), unmatchedStop: false)
        }
        if let horizon = context.horizon, event.occurredAt < horizon {
            return .rejected(EventRejection(.tooLate(occurredAt: event.occurredAt, horizon: horizon)))
        }
        let resourceNumber: UInt64
        if let stored = try txn.get(schema.resources, event.resource) {
            guard stored.owner == event.owner else {
                return .rejected(
                    EventRejection(
                        .ownerMismatch(resource: event.resource, owner: stored.owner, submitted: event.owner)))
            }
            resourceNumber = stored.number
        } else {
            resourceNumber = counters.nextResourceNumber
            counters.nextResourceNumber += 1
            try txn.put(schema.resources, event.resource, ResourceEntry(number: resourceNumber, owner: event.owner))
            try txn.put(
                schema.resourceNames, resourceNumber, ResourceName(resource: event.resource, owner: event.owner))
        }
        // From here on the event is being written: anything thrown is a failure of the ledger.
        let seq = counters.nextSeq
        counters.nextSeq += 1
        counters.count(event.kind)
        let fields = EventRecord.Fields(
            event, recordedAt: recordedAt, resourceNumber: resourceNumber,
            footprintNumbers: try names.numbers(of: event.footprint, interning: true, in: txn) ?? [],
            deltaNumbers: try names.numbers(of: event.deltas, interning: true, in: txn) ?? [])
        let record = EventRecord.record(payload: EventRecord.payload(of: fields), recordedAt: recordedAt)
        guard try txn.put(schema.events, seq, record, mode: .append) else {
            throw LedgerError.corrupt(reason: "seq \(seq) is not after the last recorded event")
        }
        try txn.put(schema.eventIDs, event.id, seq)
        try txn.put(
            schema.timeline, TimelineKey(resource: resourceNumber, occurredAt: event.occurredAt, seq: seq),
            EventRecord.kindCode(event.kind))
        let unmatched = try project(event, seq: seq, resourceNumber: resourceNumber, context: &context, in: txn)
        return .recorded(.appended(seq: seq), unmatchedStop: unmatched)
    }

    /// Whether the event recorded at `seq` is exactly `event`: their payloads are equal byte for byte. One
    /// that names a resource, owner or meter the log does not hold cannot be; nothing is interned for it.
    private func isStored(
        _ event: UsageEvent, at seq: UInt64, names: inout LogNames, in txn: borrowing WriteTransaction
    ) throws -> Bool {
        guard let record = try txn.rawGet(schema.events, seq) else {
            throw LedgerError.corrupt(reason: "event id '\(event.id)' points at seq \(seq), which is missing")
        }
        let stored = try EventRecord.storedPayload(record, seq: seq)
        guard let resource = try txn.get(schema.resources, event.resource), resource.owner == event.owner,
            let footprint = try names.numbers(of: event.footprint, interning: false, in: txn),
            let deltas = try names.numbers(of: event.deltas, interning: false, in: txn)
        else { return false }
        let fields = EventRecord.Fields(
            event, recordedAt: .earliest, resourceNumber: resource.number, footprintNumbers: footprint,
            deltaNumbers: deltas)
        let payload = EventRecord.payload(of: fields)
        return payload.withUnsafeBytes { $0.elementsEqual(stored) }
    }
}

/// A refusal of one submitted event, decided before anything of it was written. Only `appendOne` makes
/// them, from the checks that precede its writes; a `LedgerError` thrown later fails the transaction.
struct EventRejection {
    let error: LedgerError
    init(_ error: LedgerError) { self.error = error }
}

/// Counters the log keeps in `meta`, read once and written once per write transaction.
struct LogCounters {
    var nextSeq: UInt64 = 1
    var nextResourceNumber: UInt64 = 1
    /// Events recorded per kind, indexed by `EventRecord.kindCode - 1`.
    var byKind: [UInt64] = [0, 0, 0, 0]
    /// Submissions found to be duplicates, and events refused by code, over the ledger's life; written
    /// only by transactions that saw one.
    var duplicates: UInt64 = 0
    var rejectedByCode: [String: UInt64] = [:]
    private var outcomesChanged = false

    init(reading txn: borrowing some ReadableTransaction & ~Copyable, meta: Table<UTF8Text, RawBytes>) throws {
        if let value = try txn.get(Meta.nextSeq, in: meta) { nextSeq = value }
        if let value = try txn.get(Meta.nextResourceNumber, in: meta) { nextResourceNumber = value }
        if let bytes = try txn.rawGet(meta, Meta.eventsByKind.key) {
            guard bytes.count == 32 else { throw LedgerError.corrupt(reason: "events_by_kind is not 4 numbers") }
            byKind = (0..<4).map { UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
        }
        if let bytes = try txn.rawGet(meta, Meta.appendOutcomes.key) {
            var reader = ByteReader(bytes)
            do throws(ByteReader.Malformed) {
                duplicates = try reader.readBigEndianUInt64()
                for _ in 0..<min(try reader.readVarint(), 1024) {
                    let code = try reader.readString()
                    rejectedByCode[code] = try reader.readBigEndianUInt64()
                }
            } catch {
                throw LedgerError.corrupt(reason: "append_outcomes is malformed: \(error)")
            }
        }
    }

    /// Counts what one append transaction saw besides new events.
    mutating func count(_ outcome: AppendOutcome) {
        switch outcome {
        case .appended: return
        case .duplicate: duplicates += 1
        case .rejected(let error): rejectedByCode[error.code, default: 0] += 1
        }
        outcomesChanged = true
    }

    mutating func count(_ kind: EventKind) { byKind[Int(EventRecord.kindCode(kind)) - 1] += 1 }

    func write(to txn: borrowing WriteTransaction, meta: Table<UTF8Text, RawBytes>) throws {
        if outcomesChanged {
            var outcomes = ByteWriter(capacity: 64)
            outcomes.writeBigEndian(duplicates)
            outcomes.writeVarint(UInt64(rejectedByCode.count))
            for (code, count) in rejectedByCode.sorted(by: { $0.key < $1.key }) {
                outcomes.writeString(code)
                outcomes.writeBigEndian(count)
            }
            try txn.put(Meta.appendOutcomes, outcomes.bytes, in: meta)
        }
        try txn.put(Meta.nextSeq, nextSeq, in: meta)
        try txn.put(Meta.nextResourceNumber, nextResourceNumber, in: meta)
        var writer = ByteWriter(capacity: 32)
        for count in byKind { writer.writeBigEndian(count) }
        try txn.put(Meta.eventsByKind, writer.bytes, in: meta)
    }
}
