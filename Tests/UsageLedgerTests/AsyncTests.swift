import Foundation
import LMDBStorage
import Testing
@testable import UsageLedger

@Suite("Async calls")
struct AsyncTests {
    /// Task `task`'s events: five of its own, one retry of the previous task's first event (a duplicate
    /// unless that task has not run yet, when this one records it), and every tenth task one event of
    /// another owner's resource (owner_mismatch).
    static func events(ofTask task: Int) -> [UsageEvent] {
        var events = (0..<5).map { n in
            started("t\(task)-\(n)", "app/r\(task)-\(n)", owner: "org-\(task % 7)", at: "2026-11-20T00:00:00Z")
        }
        if task > 0 {
            let previous = task - 1
            events.append(
                started(
                    "t\(previous)-0", "app/r\(previous)-0", owner: "org-\(previous % 7)", at: "2026-11-20T00:00:00Z"))
        }
        if task % 10 == 9 { events.append(started("stolen-\(task)", "app/r0-0", owner: "org-x")) }
        return events
    }

    @Test("200 concurrent tasks append through the async calls: each event once, every outcome its own")
    func asyncManyTasks() async throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir) { $0.durability = .full }
        let outcomes = try await withThrowingTaskGroup(of: (Int, [AppendOutcome]).self) { group in
            for task in 0..<200 {
                group.addTask {
                    if task % 2 == 0 {
                        return (task, try await ledger.async.append(contentsOf: Self.events(ofTask: task)).outcomes)
                    }
                    // Odd tasks append one call per event, as request handlers do.
                    var outcomes: [AppendOutcome] = []
                    for event in Self.events(ofTask: task) {
                        do throws(LedgerError) {
                            let receipt = try await ledger.async.append(event)
                            outcomes.append(
                                receipt.isDuplicate ? .duplicate(seq: receipt.seq) : .appended(seq: receipt.seq))
                        } catch {
                            outcomes.append(.rejected(error))
                        }
                    }
                    return (task, outcomes)
                }
            }
            var collected: [Int: [AppendOutcome]] = [:]
            for try await (task, outcomes) in group { collected[task] = outcomes }
            return collected
        }
        let page = try await ledger.async.events(after: 0, limit: 10_000)
        let seqByID = Dictionary(uniqueKeysWithValues: page.events.map { ($0.event.id, $0.seq) })
        #expect(page.events.map(\.seq) == Array(1...UInt64(1000)))
        #expect(seqByID.count == 1000)
        for task in 0..<200 {
            let events = Self.events(ofTask: task), mine = outcomes[task] ?? []
            #expect(mine.count == events.count)
            for (event, outcome) in zip(events, mine) {
                switch outcome {
                case .appended(let seq), .duplicate(let seq): #expect(seqByID[event.id] == seq)
                case .rejected(let error):
                    #expect(event.id.hasPrefix("stolen-") && error.code == "owner_mismatch", "\(event.id): \(error)")
                }
            }
            if task % 10 == 9 { #expect(mine.last.map { if case .rejected = $0 { true } else { false } } == true) }
        }
        let appended = outcomes.values.joined().filter { if case .appended = $0 { true } else { false } }
        #expect(appended.count == 1000)
        #expect(try await ledger.async.verify().isConsistent)
        #expect(try await ledger.async.currentUsage().runningCount == 1000)
    }

    // With blocking calls on the cooperative threads instead, the task group below never runs and the test
    // hangs (tried); the limit turns that into a failure.
    @Test(
        "async appends waiting for another process's writer leave the cooperative threads free",
        .timeLimit(.minutes(1)))
    func asyncOffCooperativePool() async throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        let db = dir.child("ledger")
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: workerPath)
        holder.arguments = ["hold-write", db]
        let input = Pipe(), output = Pipe()
        holder.standardInput = input
        holder.standardOutput = output
        try holder.run()
        let said = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        #expect(said == "writing\n", "the writer said \(said)")
        let finished = Locked(0)
        // More blocked calls than this machine has cores: on the cooperative pool they would starve it.
        let appends = (0..<8).map { n in
            Task {
                try await ledger.async.append(started("w\(n)", "app/w\(n)"))
                finished.withLock { $0 += 1 }
            }
        }
        let others = await withTaskGroup(of: Int.self) { group in
            for n in 0..<16 { group.addTask { n } }
            return await group.reduce(0, +)
        }
        #expect(others == 120)
        #expect(finished.withLock { $0 } == 0, "the appends did not wait for the other process's writer")
        try input.fileHandleForWriting.close()
        for append in appends { try await append.value }
        holder.waitUntilExit()
        #expect(finished.withLock { $0 } == 8)
        #expect(try await ledger.async.currentUsage().runningCount == 8)
    }
}
