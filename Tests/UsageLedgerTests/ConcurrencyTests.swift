import Foundation
import Testing
import LMDBStorage
@testable import UsageLedger

/// Starts `count` real threads running `body(index)` and waits for all of them.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let done = DispatchSemaphore(value: 0)
    for index in 0..<count {
        Thread {
            body(index); done.signal()
        }.start()
    }
    for _ in 0..<count { done.wait() }
}

@Suite("Concurrency: appenders, readers, rollup and compaction at once")
struct ConcurrencyTests {
    @Test(
        "threads and processes appending, reading, rolling up and compacting: no gap, no duplicate, consistent reads"
    )
    func mixedWorkload() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        let ledger = try openLedger(dir)
        // An old history for compaction to prune, rolled up so that compaction may run.
        var old: [UsageEvent] = []
        for n in 0..<150 {
            let r = "app/old\(n)", owner = "org-\(n % 4)"
            old.append(
                event(.started, "old-\(n)-1", r, owner: owner, at: "2026-10-01T00:00:00Z", footprint: ["instances": 1]))
            old.append(
                event(.started, "old-\(n)-2", r, owner: owner, at: "2026-10-02T00:00:00Z", footprint: ["instances": 2]))
            old.append(
                event(.started, "old-\(n)-3", r, owner: owner, at: "2026-10-03T00:00:00Z", footprint: ["instances": 3]))
            if n % 2 == 0 { old.append(event(.stopped, "old-\(n)-4", r, owner: owner, at: "2026-10-04T00:00:00Z")) }
        }
        let setup = try ledger.append(contentsOf: old)
        #expect(setup.rejections.isEmpty)
        _ = try ledger.rollUp(now: testNow)
        let lastOldSeq = try #require(setup.lastSeq)

        let stop = Locked(false)
        let violations = Locked<[String]>([])
        let readsChecked = Locked(0)
        let appenderErrors = Locked<[String]>([])
        // Another process appends and another compacts while the threads run.
        let appender = try CompactionProcessTests.startAppending(200, owner: "org-9", to: db, in: dir)
        let compactor = try startCLI(["compact", "--db", db, "--batch-size", "7", "--now", "2026-11-24T12:00:00Z"])

        onThreads(7) { role in
            do {
                switch role {
                case 0..<3:
                    // Appenders: workers 0 and 2 submit the same ids, so a third of the submissions are retries.
                    for batch in 0..<25 {
                        let events = (0..<20).map { n -> UsageEvent in
                            let id = "m-\(role % 2)-\(batch)-\(n)", r = "app/m\(role % 2)-\(n % 40)",
                                owner = "org-\(n % 4)"
                            let at = "2026-11-2\(batch % 4)T\(10 + n % 10):00:00Z"
                            return batch % 3 == 2
                                ? event(.stopped, id, r, owner: owner, at: at)
                                : event(
                                    .started, id, r, owner: owner, at: at,
                                    footprint: ["instances": Int64(1 + n % 3), "memory_mb": 64])
                        }
                        let result = try ledger.append(contentsOf: events)
                        if !result.rejections.isEmpty { appenderErrors.withLock { $0.append("\(result.rejections)") } }
                    }
                case 3, 4:
                    // Readers: every answer is one snapshot, so totals equal the sum over the listed resources.
                    while !stop.withLock({ $0 }) {
                        for owner in (0..<4).map({ "org-\($0)" }) {
                            let current = try ledger.currentUsage(owner: owner)
                            var sums: [String: Int128] = [:]
                            for resource in current.resources {
                                if resource.owner != owner {
                                    violations.withLock {
                                        $0.append("\(resource.resource) of \(resource.owner) in \(owner)'s answer")
                                    }
                                }
                                for (name, value) in resource.footprint { sums[name, default: 0] += Int128(value) }
                            }
                            if sums != current.totals || current.runningCount != current.resources.count {
                                violations.withLock {
                                    $0.append("\(owner): totals \(current.totals) but resources sum to \(sums)")
                                }
                            }
                            _ = try ledger.usage(
                                .owner(owner), from: ts("2026-11-20T00:00:00Z"), to: testNow, granularity: .day)
                        }
                        let page = try ledger.events(after: lastOldSeq, limit: 500)
                        for (a, b) in zip(page.events, page.events.dropFirst()) where b.seq != a.seq + 1 {
                            violations.withLock { $0.append("feed gap between \(a.seq) and \(b.seq)") }
                        }
                        readsChecked.withLock { $0 += 1 }
                    }
                default:
                    // Rollups, as a scheduler would run them.
                    while !stop.withLock({ $0 }) {
                        _ = try ledger.rollUp(now: testNow, graceMicroseconds: 0, batchSize: 50)
                        usleep(2000)
                    }
                }
            } catch {
                violations.withLock { $0.append("thread \(role): \(error)") }
            }
            if role == 2 {
                // The last appender to finish stops the loops once the processes are done too.
                while appender.0.isRunning || compactor.0.isRunning { usleep(2000) }
                stop.withLock { $0 = true }
            }
        }
        let appended = finish(appender.0, appender.1, appender.2)
        let compacted = finish(compactor.0, compactor.1, compactor.2)
        #expect(appended.status == 0, "\(appended.stderr)")
        #expect(compacted.status == 0, "\(compacted.stderr)")
        #expect(violations.withLock { $0 }.isEmpty, "\(violations.withLock { $0.prefix(5) })")
        #expect(appenderErrors.withLock { $0 }.isEmpty, "\(appenderErrors.withLock { $0.prefix(3) })")
        #expect(readsChecked.withLock { $0 } > 0)

        // The feed after the old history: every new event once, in consecutive seqs.
        let feed = try ledger.events(after: lastOldSeq, limit: 100_000).events
        #expect(feed.count == 2 * 25 * 20 + 200)
        #expect(feed.map(\.seq) == Array((lastOldSeq + 1)...(lastOldSeq + UInt64(feed.count))))
        #expect(Set(feed.map(\.event.id)).count == feed.count)
        // Compaction pruned the finished old runs, and the projections agree with the log.
        let stats = try ledger.statistics()
        #expect(stats.horizon != nil)
        #expect((stats.databases["events"]?.entries ?? 0) < old.count + feed.count)
        let report = try ledger.verify()
        #expect(report.isConsistent, "\(report.differences)")
    }
}
