import Foundation
import UsageLedger

/// The deterministic workload every benchmark draws from: a seeded, realistic mix of orchestrator events.
///
/// - 80% of resources are long-running apps that scale now and then; 20% are short tasks that start and
///   stop within minutes, again and again.
/// - A tenth of all resources also get adjustments (network bytes).
/// - Owners: `org-0` … `org-499`, resources spread evenly.
/// - Delivery order is time order, except that about 2% of events are retried (delivered twice, same id and
///   payload) and about 1% arrive late (some hundreds of positions after their time).
public struct Workload: Sendable {
    /// The events in delivery order.
    public let events: [UsageEvent]
    /// The first instant of the simulated period (2026-01-01T00:00:00Z).
    public let start: Timestamp
    /// An instant just after the last event: use it as the ledger's clock.
    public let end: Timestamp
    /// The number of distinct resources.
    public let resources: Int

    /// About `count` events (exactly `count` in delivery order) over `days` simulated days, spread over
    /// `resources` resources (default: one per 10 events).
    public init(count: Int, days: Int = 30, resources: Int? = nil, seed: UInt64 = 0x5EED) {
        var random = SplitMix(seed: seed)
        let start = Timestamp(microseconds: 1_767_225_600_000_000)  // 2026-01-01T00:00:00Z
        let span = Int64(days) * 86_400_000_000
        let resourceCount = max(1, resources ?? count / 10)
        // Each resource gets about this many events (at least 10, as before the count could be chosen).
        let perResource = max(10, count / resourceCount)
        var timed: [(at: Int64, event: UsageEvent)] = []
        timed.reserveCapacity(count + count / 10)
        for r in 0..<resourceCount {
            let owner = "org-\(r % 500)"
            let adjusts = r % 10 == 3
            if r % 5 != 0 {
                let resource = ResourceID(type: "app", id: "app-\(r)")
                var at = Int64(random.next(86_400_000_000))
                var n = 0
                func emit(_ kind: EventKind, footprint: Meters? = nil, deltas: Meters? = nil) {
                    timed.append(
                        (
                            at,
                            UsageEvent(
                                id: "w\(r)-\(n)", kind: kind, resource: resource, owner: owner,
                                occurredAt: Timestamp(microseconds: start.microseconds + at),
                                footprint: footprint, deltas: deltas)
                        ))
                    n += 1
                }
                emit(
                    .started,
                    footprint: ["instances": Int64(1 + random.next(4)), "memory_mb": Int64(256 << random.next(4))])
                while n < perResource {
                    at += Int64(random.next(UInt64(span / Int64(perResource - 1))))
                    if at >= span { break }
                    if adjusts && random.next(2) == 0 {
                        emit(.adjustment, deltas: ["network_bytes": Int64(random.next(1 << 30))])
                    } else {
                        emit(
                            .started,
                            footprint: [
                                "instances": Int64(1 + random.next(8)), "memory_mb": Int64(256 << random.next(4)),
                            ])
                    }
                }
            } else {
                let resource = ResourceID(type: r % 2 == 0 ? "task" : "job", id: "task-\(r)")
                var at = Int64(random.next(UInt64(span / 5)))
                var n = 0
                while n < perResource, at < span {
                    let stop = at + 60_000_000 + Int64(random.next(30 * 60_000_000))
                    timed.append(
                        (
                            at,
                            UsageEvent(
                                id: "w\(r)-\(n)", kind: .started, resource: resource, owner: owner,
                                occurredAt: Timestamp(microseconds: start.microseconds + at),
                                footprint: ["memory_mb": 512])
                        ))
                    timed.append(
                        (
                            stop,
                            UsageEvent(
                                id: "w\(r)-\(n + 1)", kind: .stopped, resource: resource, owner: owner,
                                occurredAt: Timestamp(microseconds: start.microseconds + stop))
                        ))
                    n += 2
                    at = stop + Int64(random.next(UInt64(span / Int64(perResource / 2))))
                }
            }
        }
        timed.sort { $0.at < $1.at }
        var delivered = timed.map(\.event)
        // Late deliveries: about 1% move some hundreds of positions later. Taken from the last position
        // down, each move takes the event at `index` (still the original one: moves only touch positions
        // after it) to `target`. Removing and inserting in the whole array was quadratic (hours at 10M
        // events); the same order is built from the back instead, where each insertion shifts under 1,000.
        let count = delivered.count
        var backwards: [UsageEvent] = []
        backwards.reserveCapacity(count)
        for index in stride(from: count - 1, through: 0, by: -1) {
            if random.next(100) == 0 {
                let target = min(count - 1, index + 100 + Int(random.next(900)))
                backwards.insert(delivered[index], at: backwards.count - (target - index))
            } else {
                backwards.append(delivered[index])
            }
        }
        delivered = backwards.reversed()
        // Retries: about 2% of events are delivered again soon after.
        var withRetries: [UsageEvent] = []
        withRetries.reserveCapacity(delivered.count + delivered.count / 40)
        for (index, event) in delivered.enumerated() {
            withRetries.append(event)
            if random.next(50) == 0, index > 10 { withRetries.append(delivered[index - Int(random.next(10))]) }
        }
        events = Array(withRetries.prefix(count))
        self.start = start
        end = Timestamp(microseconds: start.microseconds + span + 3_600_000_000)
        self.resources = resourceCount
    }

    /// The events as NDJSON, one per line.
    public var ndjson: Data {
        var data = Data()
        for event in events {
            data.append(contentsOf: EventJSON.encode(event).utf8)
            data.append(0x0A)
        }
        return data
    }
}

/// SplitMix64: small, fast, and the same sequence on every machine.
public struct SplitMix: Sendable {
    private var state: UInt64
    /// Starts the sequence at `seed`.
    public init(seed: UInt64) { state = seed }
    /// A number in 0..<bound.
    public mutating func next(_ bound: UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return (z ^ (z >> 31)) % max(bound, 1)
    }
}

/// A fresh directory under the temporary directory.
public func scratchDirectory(_ name: String) -> String {
    let path = NSTemporaryDirectory() + "usage-ledger-bench-\(name)-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The workload size for this run: `USAGE_LEDGER_BENCH_EVENTS` (default 100,000).
public var benchmarkEventCount: Int {
    ProcessInfo.processInfo.environment["USAGE_LEDGER_BENCH_EVENTS"].flatMap(Int.init) ?? 100_000
}
