import Foundation
import Testing
import LMDBStorage
@testable import UsageLedger

/// Kills, from the CLI's documentation of issue 6: `USAGE_LEDGER_KILL_ROUNDS` sets how many (100 in the full run).
private var killRounds: Int { ProcessInfo.processInfo.environment["USAGE_LEDGER_KILL_ROUNDS"].flatMap(Int.init) ?? 12 }

/// The crash worker built beside the test bundle (`Tests/CrashWorker`).
var workerPath: String {
    URL(fileURLWithPath: cliPath).deletingLastPathComponent().appendingPathComponent("ledger-crash-worker").path
}

/// Runs the crash worker and collects its stdout lines as they arrive, so that they can be read after a kill.
private final class Worker {
    let process = Process()
    private let lines = Locked<[String]>([])
    private let reader: Thread
    private let finished = DispatchSemaphore(value: 0)

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: workerPath)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        let handle = out.fileHandleForReading
        let lines = self.lines, finished = self.finished
        reader = Thread {
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    lines.withLock { $0.append(line) }
                    pending.removeSubrange(pending.startIndex...newline)
                }
            }
            finished.signal()
        }
        try process.run()
        reader.start()
    }

    /// Every complete line, once the process has exited and its pipe is drained.
    func waitForLines() -> [String] {
        process.waitUntilExit()
        finished.wait()
        return lines.withLock { $0 }
    }

    /// Lines so far.
    var linesSoFar: Int { lines.withLock { $0.count } }
}

// The time limit makes a lock left by a killed writer a failure rather than a hang: after every kill
// the retry must open the ledger and take the writer lock the dead process may have held.
@Suite("Crashes: appenders and rollups killed with SIGKILL", .serialized, .timeLimit(.minutes(10)))
struct CrashTests {
    static let batchSize = 20

    /// The feed's ids and seqs, and every check that must hold after a kill.
    static func checkLedger(_ db: String, acknowledged: [Int: [UInt64]], round: Int) throws -> Set<Int> {
        let ledger = try Ledger(path: db)
        var seqByID: [String: [UInt64]] = [:]
        var cursor: UInt64 = 0
        var previous: UInt64 = 0
        while true {
            let page = try ledger.events(after: cursor, limit: 1000)
            for recorded in page.events {
                #expect(recorded.seq == previous + 1, "round \(round): seq \(recorded.seq) after \(previous), a gap")
                previous = recorded.seq
                seqByID[recorded.event.id, default: []].append(recorded.seq)
            }
            if page.events.isEmpty { break }
            cursor = page.nextCursor
        }
        // Every event is recorded once; every acknowledged event is recorded with its acknowledged seq.
        #expect(seqByID.values.allSatisfy { $0.count == 1 }, "round \(round): an id recorded twice")
        for (number, seqs) in acknowledged {
            for (n, seq) in seqs.enumerated() {
                #expect(
                    seqByID["b\(number)-e\(n)"] == [seq],
                    "round \(round): acknowledged b\(number)-e\(n) at \(seq) is missing")
            }
        }
        // No batch is half-applied.
        var countByBatch: [Int: Int] = [:]
        for id in seqByID.keys {
            guard let number = Int(id.dropFirst().prefix { $0 != "-" }) else { continue }
            countByBatch[number, default: 0] += 1
        }
        #expect(
            countByBatch.values.allSatisfy { $0 == batchSize },
            "round \(round): a batch is half-applied: \(countByBatch.filter { $0.value != batchSize })")
        let report = try ledger.verify()
        #expect(report.isConsistent, "round \(round): \(report.differences)")
        return Set(countByBatch.keys)
    }

    @Test(
        "an appender killed at random loses no acknowledged event, half-applies no batch; a retry yields duplicates"
    )
    func appenderKilled() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        var acknowledged: [Int: [UInt64]] = [:]
        var next = 0
        var random = SystemRandomNumberGenerator()
        var killedMidBatch = 0
        for round in 0..<killRounds {
            let worker = try Worker(["append", db, "\(next)", "100000", "\(Self.batchSize)"])
            // Let it acknowledge a few batches (opening included), then kill it at a random moment.
            let deadline = Date().addingTimeInterval(10)
            while worker.linesSoFar < 1, worker.process.isRunning, Date() < deadline { usleep(500) }
            usleep(UInt32.random(in: 0..<40_000, using: &random))
            kill(worker.process.processIdentifier, SIGKILL)
            let lines = worker.waitForLines()
            #expect(
                worker.process.terminationReason == .uncaughtSignal,
                "round \(round): the worker ended on its own: \(lines.last ?? "")")
            var last = next - 1
            for line in lines {
                let fields = line.split(separator: " ")
                guard fields.count == 3, fields[0] == "ack", let number = Int(fields[1]) else {
                    Issue.record("round \(round): unexpected worker output \(line)")
                    continue
                }
                acknowledged[number] = fields[2].split(separator: ",").compactMap { UInt64($0) }
                last = number
            }
            let present = try Self.checkLedger(db, acknowledged: acknowledged, round: round)
            // The batch in flight at the kill either committed whole (its retry is all duplicates) or not at all.
            let inFlight = last + 1
            let retry = try runWorker(["retry", db, "\(inFlight)", "1", "\(Self.batchSize)"])
            if present.contains(inFlight) {
                killedMidBatch += 1
                #expect(retry == "retry \(inFlight) 0 \(Self.batchSize)", "round \(round): \(retry)")
            } else {
                #expect(retry == "retry \(inFlight) \(Self.batchSize) 0", "round \(round): \(retry)")
            }
            next = inFlight + 1
        }
        // A retry of everything acknowledged records nothing new.
        let lines = try runWorker(["retry", db, "0", "\(next)", "\(Self.batchSize)"]).split(separator: "\n")
        #expect(lines.count == next)
        #expect(lines.allSatisfy { $0.hasSuffix(" 0 \(Self.batchSize)") }, "a retry recorded new events")
        _ = try Self.checkLedger(db, acknowledged: acknowledged, round: killRounds)
        #expect(acknowledged.count > killRounds, "too few batches were acknowledged to exercise the kills")
        print(
            "appender kills: \(killRounds), batches acknowledged \(acknowledged.count), committed but unacknowledged "
                + "at the kill \(killedMidBatch)"
        )
    }

    /// Runs the worker to completion and returns its stdout.
    func runWorker(_ arguments: [String]) throws -> String {
        let worker = try Worker(arguments)
        return worker.waitForLines().joined(separator: "\n")
    }

    @Test(
        "a rollup killed at random leaves consistent projections; a rerun gives the rows of an uninterrupted one"
    )
    func rollupKilled() throws {
        let rounds = max(3, killRounds / 4)
        var random = SystemRandomNumberGenerator()
        var interruptedMidway = 0
        for round in 0..<rounds {
            let dir = try TemporaryDirectory()
            let db = dir.child("ledger"), reference = dir.child("reference")
            // Many resources running for days, so that the rollup takes many transactions.
            for path in [db, reference] {
                var options = LedgerOptions()
                options.clock = .fixed(testNow)
                options.durability = .noSync
                let ledger = try Ledger(path: path, options: options)
                let events = (0..<200).map { n in
                    started(
                        "s\(n)", "app/r\(n)", owner: "org-\(n % 7)", at: "2026-11-\(14 + n % 9)T0\(n % 10):15:00Z",
                        footprint: ["instances": Int64(1 + n % 3), "memory_mb": 128])
                }
                _ = try ledger.append(contentsOf: events)
            }
            _ = try Ledger(path: reference).rollUp(now: testNow)
            let observer = try Ledger(path: db)
            let process = try startCLI(["rollup", "--db", db, "--batch-size", "5", "--now", "2026-11-24T12:00:00Z"])
            // Kill once the rollup has recorded its target (its first transaction), at a random point after.
            let deadline = Date().addingTimeInterval(10)
            while try observer.statistics().rollupTarget == nil, process.0.isRunning, Date() < deadline { usleep(500) }
            usleep(UInt32.random(in: 0..<30_000, using: &random))
            kill(process.0.processIdentifier, SIGKILL)
            _ = finish(process.0, process.1, process.2)
            let stats = try observer.statistics()
            if stats.rollupTarget != nil { interruptedMidway += 1 }
            let report = try observer.verify()
            #expect(report.isConsistent, "round \(round): \(report.differences)")
            let rerun = try runCLI(["rollup", "--db", db, "--now", "2026-11-24T12:00:00Z"])
            #expect(rerun.status == 0, "round \(round): \(rerun.stderr)")
            let owners = (0..<7).map { "org-\($0)" }
            for owner in owners {
                let from = ts("2026-11-14T00:00:00Z"), to = ts("2026-11-24T00:00:00Z")
                let got = try observer.usage(
                    .owner(owner), from: from, to: to, granularity: .hour, groupByResource: true)
                let want = try Ledger(path: reference).usage(
                    .owner(owner), from: from, to: to, granularity: .hour, groupByResource: true)
                #expect(got.rows == want.rows, "round \(round): \(owner)")
            }
            #expect(try observer.verify().isConsistent)
        }
        #expect(interruptedMidway > 0, "no kill landed inside the rollup")
        print("rollup kills: \(rounds), interrupted between batches: \(interruptedMidway)")
    }
}
