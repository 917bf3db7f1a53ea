import Foundation
import LMDBStorage
import Testing
@testable import UsageLedger

@Suite("Group commit: concurrent appends share write transactions")
struct GroupCommitTests {
    @Test(
        "16 threads appending single events: each gets its own outcome, once durable, duplicates and rejections"
    )
    func concurrentSingleAppends() throws {
        let dir = try TemporaryDirectory()
        // Full durability: commits take long enough for appends to queue behind them.
        let ledger = try openLedger(dir) { $0.durability = .full }
        try ledger.append(started("owned", "app/owned", owner: "org-a"))
        let threads = 16, perThread = 40
        let outcomes = Locked<[Int: [Result<AppendReceipt, LedgerError>]]>([:])
        onThreads(threads) { thread in
            var mine: [Result<AppendReceipt, LedgerError>] = []
            for n in 0..<perThread {
                let event: UsageEvent
                switch n {
                // Every thread submits the same event: one of them records it, the others get a duplicate.
                case 0: event = started("shared", "app/shared", owner: "org-s")
                // Another owner's resource: rejected, alone.
                case 1: event = started("steal-\(thread)", "app/owned", owner: "org-\(thread)")
                default: event = started("t\(thread)-\(n)", "app/t\(thread)-\(n % 5)", owner: "org-\(thread % 3)")
                }
                do throws(LedgerError) { mine.append(.success(try ledger.append(event))) } catch {
                    mine.append(.failure(error))
                }
            }
            outcomes.withLock { $0[thread] = mine }
        }
        let all = outcomes.withLock { $0 }
        #expect(all.count == threads)
        var seqs = Set<UInt64>()
        var sharedSeqs = Set<UInt64>(), sharedNew = 0
        for thread in 0..<threads {
            let mine = all[thread] ?? []
            #expect(mine.count == perThread)
            for (n, outcome) in mine.enumerated() {
                switch (n, outcome) {
                case (0, .success(let receipt)):
                    sharedSeqs.insert(receipt.seq)
                    if !receipt.isDuplicate { sharedNew += 1 }
                case (1, .failure(let error)):
                    #expect(error.code == "owner_mismatch")
                case (2..., .success(let receipt)):
                    #expect(!receipt.isDuplicate)
                    #expect(seqs.insert(receipt.seq).inserted, "seq \(receipt.seq) given twice")
                    // The seq each caller was told holds that caller's event, durably committed.
                    #expect(try ledger.event(seq: receipt.seq)?.event.id == "t\(thread)-\(n)")
                default:
                    Issue.record("thread \(thread) event \(n): unexpected \(outcome)")
                }
            }
        }
        #expect(sharedNew == 1 && sharedSeqs.count == 1)
        let stats = try ledger.statistics()
        #expect(stats.nextSeq == UInt64(2 + threads * (perThread - 2)) + 1)
        #expect(stats.duplicates == UInt64(threads - 1))
        #expect(stats.rejectedByCode["owner_mismatch"] == UInt64(threads))
        // Every call was committed, and some commits held more than one call.
        let counts = ledger.appendCommitCounts
        #expect(counts.calls == 1 + threads * perThread)
        #expect(counts.transactions < counts.calls, "no two appends shared a commit: \(counts)")
        #expect(try ledger.verify().isConsistent)
    }

    @Test("a failure of the ledger fails every call of its group, and nothing of them is written")
    func groupFailure() throws {
        let dir = try TemporaryDirectory()
        let roomy = try openLedger(dir) { $0.initialMapSize = 1 << 20 }
        let mapSize = try roomy.statistics().environment.mapSize
        let tight = try openLedger(dir) { $0.maximumMapSize = mapSize }
        let failures = Locked<[LedgerError]>([])
        let successes = Locked(0)
        onThreads(4) { thread in
            for batch in 0..<10 {
                let events = (0..<500).map { n in started("g\(thread)-\(batch)-\(n)", "app/g\(thread)-\(batch)-\(n)") }
                do throws(LedgerError) {
                    let appended = try tight.append(contentsOf: events).appendedCount
                    successes.withLock { $0 += appended }
                } catch {
                    failures.withLock { $0.append(error) }
                }
            }
        }
        let failed = failures.withLock { $0 }
        #expect(!failed.isEmpty)
        #expect(failed.allSatisfy { $0 == .ledgerFull(maximumBytes: mapSize) })
        // What was reported appended is exactly what is stored: no failed call left events behind.
        #expect(try tight.statistics().nextSeq == UInt64(successes.withLock { $0 }) + 1)
        #expect(try tight.verify().isConsistent)
    }

    @Test("a group takes the queued calls in order up to 10,000 events, and each call gets its own result")
    func groupBound() {
        let groupCommit = GroupCommit()
        let held = DispatchSemaphore(value: 0)
        let groups = Locked<[[Int]]>([])
        // A commit that records each group's call sizes; the first one waits until the others have queued.
        let commit: @Sendable ([GroupCommit.Request]) -> Result<[AppendResult], LedgerError> = { group in
            let sizes = group.map(\.prepared.count)
            let first = groups.withLock { all -> Bool in
                all.append(sizes)
                return all.count == 1
            }
            if first { held.wait() }
            return .success(
                group.map { request in
                    AppendResult(outcomes: request.prepared.map { _ in .appended(seq: UInt64(request.prepared.count)) })
                })
        }
        @Sendable func request(_ events: Int) -> GroupCommit.Request {
            let event = started("e")
            return GroupCommit.Request(
                prepared: Array(repeating: .success(event), count: events), recordedAt: testNow)
        }
        let sizes = [1, 4_000, 4_000, 4_000, 4_000, 15_000]
        let results = Locked<[Int: Int]>([:])
        let done = DispatchSemaphore(value: 0)
        for (index, size) in sizes.enumerated() {
            Thread {
                let outcome = groupCommit.submit(request(size), commit: commit)
                let seq = (try? outcome.get())?.outcomes.first?.seq.map(Int.init) ?? -1
                let count = (try? outcome.get())?.outcomes.count ?? -1
                results.withLock { $0[index] = count == size && seq == size ? size : -1 }
                done.signal()
            }.start()
            // Queue them in this order: the first leads and waits in its commit.
            while index > 0 && groupCommit.queuedCount < index { usleep(100) }
            if index == 0 { while groups.withLock({ $0.count }) == 0 { usleep(100) } }
        }
        held.signal()
        for _ in sizes { done.wait() }
        // Two calls of 4,000 fit in a group, a third does not; the call of 15,000 goes alone.
        #expect(groups.withLock { $0 } == [[1], [4_000, 4_000], [4_000, 4_000], [15_000]])
        #expect(results.withLock { $0 } == Dictionary(uniqueKeysWithValues: sizes.enumerated().map { ($0, $1) }))
        #expect(groupCommit.counts == (groups: 4, requests: 6))
    }
}
