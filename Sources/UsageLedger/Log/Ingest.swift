import LMDBStorage
import LedgerCore
#if canImport(Glibc)
import Glibc
#endif

/// One line of NDJSON input that was not recorded.
public struct IngestRejection: Sendable, Equatable {
    /// The line number, from 1.
    public var line: Int
    /// The event's `id`, when it could be read.
    public var eventID: String?
    /// Why the line was rejected.
    public var error: LedgerError
}

/// The totals of one NDJSON ingest.
public struct IngestSummary: Sendable, Equatable {
    /// Lines read (blank lines included).
    public var lines = 0
    /// Events newly recorded.
    public var appended = 0
    /// Events already recorded (retries).
    public var duplicates = 0
    /// Lines rejected.
    public var rejected = 0
    /// Blank lines skipped.
    public var blank = 0
    /// Appended `stopped` events that found their resource not running.
    public var unmatchedStops = 0
    /// The first and last `seq` assigned.
    public var firstSeq: UInt64?
    /// See `firstSeq`.
    public var lastSeq: UInt64?
}

/// Streams NDJSON into a ledger in batches, in bounded memory: the importer behind `usage-ledger append`.
///
/// Line ends may be LF or CRLF; blank lines are skipped; a UTF-8 byte-order mark at the very start is
/// ignored. A line that cannot be decoded is reported with its number and the rest goes on.
///
/// Decoding and appending overlap: while one batch is appended (and committed) on a second thread, the
/// calling thread reads and decodes the next, so memory holds two batches. Rejections and progress are
/// reported on the calling thread, in line order, once their batch has committed.
public struct NDJSONIngest: Sendable {
    /// Events per write transaction (default `NDJSONIngest.defaultBatchSize`).
    public var batchSize = NDJSONIngest.defaultBatchSize
    /// The longest line accepted, in bytes; a longer one is rejected (and skipped) without being held
    /// in memory whole (default `NDJSONIngest.defaultMaximumLineBytes`).
    public var maximumLineBytes = NDJSONIngest.defaultMaximumLineBytes

    /// An ingest with the default batch size (20,000) and line limit (1 MiB).
    public init() {}

    /// Reads NDJSON from the file descriptor `fd` until its end and appends it to `ledger`.
    ///
    /// - Parameters:
    ///   - fd: an open file descriptor (a file, a pipe, standard input); it is not closed.
    ///   - ledger: the ledger to append to.
    ///   - onRejection: called for each rejected line, in order.
    ///   - onProgress: called after each committed batch with the running summary.
    /// - Throws: a failure of the ledger or of reading; batches committed before it stay committed.
    public func run(
        fd: Int32, into ledger: Ledger,
        onRejection: (IngestRejection) -> Void,
        onProgress: (IngestSummary) -> Void = { _ in }
    ) throws(LedgerError) -> IngestSummary {
        guard Self.batchSizes.contains(batchSize) else {
            throw .invalidArgument(
                reason:
                    "the batch size must be \(Self.batchSizes.lowerBound) to \(Self.batchSizes.upperBound) events "
                    + "(got \(batchSize))"
            )
        }
        var summary = IngestSummary()
        var batch = IngestBatch()
        batch.events.reserveCapacity(batchSize)
        // The batch being appended on the second thread while this one decodes the next (two cores).
        var inFlight: (batch: IngestBatch, append: BackgroundAppend)?

        /// Waits for the batch in flight and reports it: rejections in line order, then progress.
        func collect() throws(LedgerError) {
            guard let (done, append) = inFlight else { return }
            inFlight = nil
            var rejections = done.undecodable
            defer {
                for rejection in rejections.sorted(by: { $0.line < $1.line }) { onRejection(rejection) }
            }
            guard let result = try append.wait() else { return }
            summary.unmatchedStops += result.unmatchedStops.count
            for (index, outcome) in result.outcomes.enumerated() {
                switch outcome {
                case .appended(let seq):
                    summary.appended += 1
                    if summary.firstSeq == nil { summary.firstSeq = seq }
                    summary.lastSeq = seq
                case .duplicate:
                    summary.duplicates += 1
                case .rejected(let error):
                    summary.rejected += 1
                    rejections.append(
                        IngestRejection(line: done.lines[index], eventID: done.events[index].id, error: error))
                }
            }
            onProgress(summary)
        }

        /// Hands the decoded batch to the second thread, once the previous one is committed and reported.
        func flush() throws(LedgerError) {
            guard !batch.isEmpty else { return }
            try collect()
            inFlight = (batch, try BackgroundAppend(batch.events, into: ledger))
            batch = IngestBatch()
            batch.events.reserveCapacity(batchSize)
        }

        var reader = NDJSONLineReader(fd: fd, maximumLineBytes: maximumLineBytes)
        var lineError: LedgerError?
        // A failure of the batch in flight is reported once it is known; what was committed stays.
        defer { _ = try? collect() }
        while true {
            let more = try reader.nextLine { number, line in
                summary.lines += 1
                let bytes: UnsafeBufferPointer<UInt8>
                switch line {
                case .tooLong:
                    summary.rejected += 1
                    batch.undecodable.append(
                        IngestRejection(
                            line: number, eventID: nil,
                            error: .invalidJSON(
                                reason: "line is longer than \(maximumLineBytes) bytes")))
                    return
                case .blank:
                    summary.blank += 1
                    return
                case .text(let text):
                    bytes = text
                }
                do throws(LedgerError) {
                    batch.events.append(try EventJSON.decodeUnvalidated(bytes))  // append validates
                    batch.lines.append(number)
                } catch {
                    summary.rejected += 1
                    batch.undecodable.append(
                        IngestRejection(line: number, eventID: EventJSON.peekID(bytes), error: error))
                }
                if batch.events.count + batch.undecodable.count >= batchSize {
                    do throws(LedgerError) { try flush() } catch { lineError = error }
                }
            }
            if let lineError { throw lineError }
            if !more { break }
        }
        try flush()
        try collect()
        return summary
    }
}

/// Lines decoded for one write transaction: the events, their line numbers, and the lines that failed to
/// decode (reported with the batch they fall in, so that rejections stay in line order).
struct IngestBatch: Sendable {
    var events: [UsageEvent] = []
    var lines: [Int] = []
    var undecodable: [IngestRejection] = []

    var isEmpty: Bool { events.isEmpty && undecodable.isEmpty }
}

/// One `append(contentsOf:)` run on a thread of its own, so that decoding the next batch overlaps it;
/// `wait()` joins the thread and returns what it returned (nil for a batch with no events).
final class BackgroundAppend: @unchecked Sendable {
    // @unchecked: `thread` is set once, before the thread can run; `result` is behind a lock (and read only
    // after pthread_join, which ThreadSanitizer sees).
    private var thread = pthread_t()
    private var started = false
    private let result = Locked<Result<AppendResult, LedgerError>?>(nil)
    private let events: [UsageEvent]
    private let ledger: Ledger

    init(_ events: [UsageEvent], into ledger: Ledger) throws(LedgerError) {
        self.events = events
        self.ledger = ledger
        guard !events.isEmpty else { return }
        let context = Unmanaged.passRetained(self).toOpaque()
        let status = pthread_create(
            &thread, nil,
            { context in
                guard let context else { return nil }
                Unmanaged<BackgroundAppend>.fromOpaque(context).takeRetainedValue().run()
                return nil
            }, context)
        guard status == 0 else {
            Unmanaged<BackgroundAppend>.fromOpaque(context).release()
            throw .storage(code: status, reason: "cannot start the append thread: \(String(cString: strerror(status)))")
        }
        started = true
    }

    private func run() {
        let outcome: Result<AppendResult, LedgerError>
        do throws(LedgerError) { outcome = .success(try ledger.append(contentsOf: events)) } catch {
            outcome = .failure(error)
        }
        result.withLock { $0 = outcome }
    }

    /// Waits for the append; nil when there was nothing to append.
    func wait() throws(LedgerError) -> AppendResult? {
        guard started else { return nil }
        started = false
        pthread_join(thread, nil)
        guard let outcome = result.withLock({ $0 }) else {
            throw .storage(code: 0, reason: "the append thread ended without a result")
        }
        return try outcome.get()
    }
}

/// A line of NDJSON input that cannot be decoded: its number and why. `RunningResource.readInventory`
/// throws it.
public struct NDJSONLineError: Error, Sendable, Equatable {
    /// The line number, from 1.
    public var line: Int
    /// Why the line cannot be decoded.
    public var error: LedgerError

    /// A line that cannot be decoded.
    public init(line: Int, error: LedgerError) {
        self.line = line
        self.error = error
    }
}

/// The one reader of NDJSON input, behind `NDJSONIngest` (events) and `RunningResource.readInventory`
/// (inventories of running resources): it numbers lines from 1, ignores a UTF-8 byte-order mark at the
/// very start, takes LF or CRLF line ends, and tells blank lines (nothing but spaces and tabs) apart.
public struct NDJSONLineReader {
    /// One line of input.
    public enum Line {
        /// The line's text, without its line end (or the byte-order mark on line 1); valid only in the
        /// call it is passed to.
        case text(UnsafeBufferPointer<UInt8>)
        /// The line holds nothing but spaces and tabs.
        case blank
        /// The line is longer than the limit; it was skipped without being held in memory whole.
        case tooLong
    }

    private var lines: LineReader
    private var number = 0

    /// Reads from the open file descriptor `fd` (not closed by the reader), in lines of at most
    /// `maximumLineBytes` bytes.
    public init(fd: Int32, maximumLineBytes: Int = NDJSONIngest.defaultMaximumLineBytes) {
        lines = LineReader(fd: fd, maximumLineBytes: maximumLineBytes)
    }

    /// Calls `body` with the next line's number (from 1) and the line; returns false, without calling
    /// it, once the input is exhausted.
    /// - Throws: `storage` when reading fails.
    public mutating func nextLine(_ body: (_ number: Int, _ line: Line) -> Void) throws(LedgerError) -> Bool {
        var number = self.number
        defer { self.number = number }
        return try lines.nextLine { line, tooLong in
            number += 1
            var bytes = line
            if number == 1, bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF {
                bytes = UnsafeBufferPointer(rebasing: bytes[3...])
            }
            if let last = bytes.last, last == UInt8(ascii: "\r") {
                bytes = UnsafeBufferPointer(rebasing: bytes.dropLast())
            }
            if tooLong {
                body(number, .tooLong)
            } else if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) {
                body(number, .blank)
            } else {
                body(number, .text(bytes))
            }
        }
    }
}

extension RunningResource {
    /// Reads an inventory of running resources, one JSON object a line (the `seed-baseline --running FILE`
    /// input), from the open file descriptor `fd` until its end; `fd` is not closed. Lines follow the
    /// rules of `NDJSONLineReader`: blank lines are skipped.
    ///
    /// - Throws: `NDJSONLineError` naming the first line that cannot be decoded (or is longer than
    ///   `maximumLineBytes`), or `LedgerError.storage` when reading fails.
    public static func readInventory(
        fd: Int32, maximumLineBytes: Int = NDJSONIngest.defaultMaximumLineBytes
    ) throws -> [RunningResource] {
        var reader = NDJSONLineReader(fd: fd, maximumLineBytes: maximumLineBytes)
        var resources: [RunningResource] = []
        var failure: NDJSONLineError?
        while failure == nil,
            try reader.nextLine({ number, line in
                switch line {
                case .blank: return
                case .tooLong:
                    failure = NDJSONLineError(
                        line: number,
                        error: .invalidJSON(
                            reason: "line is longer than \(maximumLineBytes) bytes"))
                case .text(let bytes):
                    do throws(LedgerError) {
                        resources.append(try decode(String(decoding: bytes, as: UTF8.self)))
                    } catch {
                        failure = NDJSONLineError(line: number, error: error)
                    }
                }
            })
        {}
        if let failure { throw failure }
        return resources
    }
}

/// Splits a file descriptor's bytes into lines, reading 256 KiB at a time. A line longer than the limit
/// is reported as too long and skipped without being buffered whole.
struct LineReader {
    let fd: Int32
    let maximumLineBytes: Int
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEnd = false
    private var skippingLongLine = false

    init(fd: Int32, maximumLineBytes: Int) {
        self.fd = fd
        self.maximumLineBytes = maximumLineBytes
        buffer.reserveCapacity(1 << 18)
    }

    /// Calls `body` with the next line (without its LF); returns false once the input is exhausted.
    mutating func nextLine(_ body: (UnsafeBufferPointer<UInt8>, _ tooLong: Bool) -> Void) throws(LedgerError) -> Bool {
        while true {
            if let newline = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
                let lineStart = start
                start = newline + 1
                if skippingLongLine {
                    skippingLongLine = false
                    continue
                }
                let tooLong = newline - lineStart > maximumLineBytes
                buffer.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[lineStart..<newline]), tooLong) }
                return true
            }
            if atEnd {
                guard start < buffer.count || skippingLongLine else { return false }
                let lineStart = start
                start = buffer.count
                if skippingLongLine {
                    skippingLongLine = false
                    return false
                }
                let tooLong = buffer.count - lineStart > maximumLineBytes
                buffer.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[lineStart...]), tooLong) }
                return true
            }
            // Keep only the unfinished line, then read more.
            if start > 0 {
                buffer.removeSubrange(0..<start)
                start = 0
            }
            if buffer.count > maximumLineBytes {
                if !skippingLongLine {
                    skippingLongLine = true
                    body(UnsafeBufferPointer(start: nil, count: 0), true)
                    buffer.removeAll(keepingCapacity: true)
                    return true
                }
                buffer.removeAll(keepingCapacity: true)
            }
            let chunk = 1 << 18
            let oldCount = buffer.count
            buffer.append(contentsOf: repeatElement(0, count: chunk))
            let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress.map { $0 + oldCount }, chunk) }
            if got < 0 {
                let code = errno
                buffer.removeSubrange(oldCount...)
                if code == EINTR { continue }
                throw .storage(code: code, reason: "reading input failed: \(String(cString: strerror(code)))")
            }
            buffer.removeSubrange((oldCount + got)...)
            if got == 0 { atEnd = true }
        }
    }
}
