import Foundation
import Testing
@testable import UsageLedger

@Suite("Isolation between owners")
struct IsolationTests {
    @Test("queries for one owner never return another owner's resources or usage, with many owners and look-alike ids")
    func ownersStayApart() throws {
        let dir = try TemporaryDirectory()
        let ledger = try openLedger(dir)
        // Owners whose names are prefixes of one another, and resource ids that repeat the owner names.
        let owners =
            ["org", "org-1", "org-10", "org-100", "org-1.0", "org_1", "org-2", "Org-1"]
            + (0..<40).map { "tenant-\($0)" }
        var events: [UsageEvent] = []
        var expectedInstances: [String: Int64] = [:]
        var expectedResources: [String: Set<String>] = [:]
        for (o, owner) in owners.enumerated() {
            for n in 0..<(1 + o % 4) {
                let id = "\(owner)-\(n)", type = n % 2 == 0 ? "app" : "app.\(owner.lowercased())"
                let instances = Int64(o + 1)
                events.append(
                    event(
                        .started, "s-\(owner)-\(n)", "\(type)/\(id)", owner: owner, at: "2026-11-23T10:00:00Z",
                        footprint: ["instances": instances]))
                events.append(
                    event(
                        .adjustment, "a-\(owner)-\(n)", "\(type)/\(id)", owner: owner, at: "2026-11-23T10:30:00Z",
                        deltas: ["bytes": Int64(o)]))
                expectedInstances[owner, default: 0] += instances
                expectedResources[owner, default: []].insert("\(type)/\(id)")
            }
        }
        #expect(try ledger.append(contentsOf: events).rejections.isEmpty)
        _ = try ledger.rollUp(now: testNow)
        for (o, owner) in owners.enumerated() {
            let current = try ledger.currentUsage(owner: owner)
            #expect(Set(current.resources.map(\.resource.description)) == expectedResources[owner], "\(owner)")
            #expect(current.resources.allSatisfy { $0.owner == owner })
            #expect(current.totals == ["instances": Int128(expectedInstances[owner] ?? 0)], "\(owner)")
            let usage = try ledger.usage(
                .owner(owner), from: ts("2026-11-23T00:00:00Z"), to: ts("2026-11-24T00:00:00Z"),
                granularity: .day, groupByResource: true)
            #expect(Set(usage.rows.compactMap { $0.resource?.description }) == expectedResources[owner], "\(owner)")
            let total = try ledger.usage(
                .owner(owner), from: ts("2026-11-23T00:00:00Z"), to: ts("2026-11-24T00:00:00Z"), granularity: .total)
            let resourcesOfOwner = Int128(expectedResources[owner]?.count ?? 0)
            #expect(
                total.rows.first?.amounts.meterMicroseconds == [
                    "instances": Int128(expectedInstances[owner] ?? 0) * 14 * 3_600_000_000
                ], "\(owner)")
            #expect(total.rows.first?.amounts.adjustments == ["bytes": Int128(o) * resourcesOfOwner], "\(owner)")
        }
        #expect(try ledger.currentUsage(owner: "org-1000").runningCount == 0)
        #expect(try ledger.currentUsage(owner: "org-").runningCount == 0)
    }
}
