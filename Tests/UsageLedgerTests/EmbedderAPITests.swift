import Foundation
import PropertyBased
import Testing
import UsageLedgerFoundationCompat
@testable import UsageLedger

/// The small types an embedder meets first: timestamps with durations and dates, meters and attributes,
/// and a handle's lifetime.
@Suite("Embedder API")
struct EmbedderAPITests {
    static let instant = Timestamp(microseconds: 1_795_521_600_000_000)  // 2026-11-24T12:00:00Z

    @Test("Timestamp moves by Duration exactly, truncating below a microsecond toward zero")
    func durations() throws {
        let t = Self.instant
        #expect(t + .seconds(90) == Timestamp(microseconds: t.microseconds + 90_000_000))
        #expect(t - .milliseconds(1500) == Timestamp(microseconds: t.microseconds - 1_500_000))
        #expect(t + .nanoseconds(1999) == Timestamp(microseconds: t.microseconds + 1))
        #expect(t + .nanoseconds(-1999) == Timestamp(microseconds: t.microseconds - 1))
        var moved = t
        moved += .seconds(3600)
        moved -= .microseconds(1)
        #expect(moved == Timestamp(microseconds: t.microseconds + 3_599_999_999))
        #expect(moved - t == .microseconds(3_599_999_999))
        #expect(t - moved == .microseconds(-3_599_999_999))
        #expect(t.adding(.seconds(Int64.max)) == nil)
        #expect(Timestamp(microseconds: .max).adding(.microseconds(1)) == nil)
        #expect(Timestamp.latest - Timestamp.earliest == .microseconds(315_569_519_999_999_999))
        // The extremes of Int64: the difference does not fit Int64 microseconds, yet is exact.
        let span = Timestamp(microseconds: .max) - Timestamp(microseconds: .min)
        #expect(span == .microseconds(Int64.max) + .microseconds(Int64.max) + .microseconds(1))
    }

    @Test("over random instants and durations, t + (u - t) == u and (t + d) - t == d")
    func durationProperty() async {
        let range = Timestamp.earliest.microseconds...Timestamp.latest.microseconds
        await propertyCheck(input: Gen.int64(in: range), Gen.int64(in: range)) { a, b in
            let t = Timestamp(microseconds: a), u = Timestamp(microseconds: b)
            #expect(t + (u - t) == u)
            let d = Duration.microseconds(b / 2)
            #expect((t + d) - t == d)
        }
    }

    @Test("Date and Timestamp convert both ways, exact to the microsecond from 1933 to 2068")
    func dates() async throws {
        let t = try Timestamp(rfc3339: "2026-11-24T12:00:00.000001Z")
        #expect(Date(t).timeIntervalSince1970 == 1_795_521_600.000001)
        #expect(Timestamp(Date(timeIntervalSince1970: 0)) == Timestamp(microseconds: 0))
        #expect(Timestamp(Date(timeIntervalSince1970: -0.0000015)) == Timestamp(microseconds: -2))
        #expect(Timestamp(Date.distantFuture) > Timestamp(Date.distantPast))
        #expect(Timestamp(Date(timeIntervalSinceReferenceDate: .infinity)) == Timestamp(microseconds: .max))
        let from = try Timestamp(rfc3339: "1933-01-01T00:00:00Z").microseconds
        let to = try Timestamp(rfc3339: "2068-12-31T00:00:00Z").microseconds
        await propertyCheck(count: 2000, input: Gen.int64(in: from...to)) { micros in
            let stamp = Timestamp(microseconds: micros)
            #expect(Timestamp(Date(stamp)) == stamp)
        }
    }

    @Test("Meters and Attributes read as dictionary literals and can be set, kept sorted, nil removing")
    func metersAndAttributes() {
        var meters: Meters = ["memory_mb": 512, "instances": 2]
        #expect(meters.description == #"["instances": 2, "memory_mb": 512]"#)
        meters["cpu_milli"] = 0
        meters["memory_mb"] = 1024
        meters["instances"] = nil
        meters["absent"] = nil
        #expect(meters == ["cpu_milli": 0, "memory_mb": 1024])
        #expect(meters.entries.map(\.name) == ["cpu_milli", "memory_mb"])
        #expect(meters["cpu_milli"] == 0 && meters["instances"] == nil)
        #expect(Meters().description == "[:]")
        var attributes: Attributes = ["zone": "eu-1"]
        attributes["note"] = "a \"quoted\"\nline"
        #expect(attributes.description == #"["note": "a \"quoted\"\nline", "zone": "eu-1"]"#)
        attributes["zone"] = nil
        #expect(attributes == ["note": "a \"quoted\"\nline"])
    }

    @Test("setting meters one by one gives what a dictionary of the same pairs gives")
    func metersSettingProperty() async {
        let names = ["a", "b", "cpu", "memory_mb", "z", "é"]
        await propertyCheck(input: Gen.int(in: 0...Int.max)) { seed in
            var random = SplitMix(seed: UInt64(seed))
            var meters = Meters(), reference: [String: Int64] = [:]
            for _ in 0..<20 {
                let name = names[Int(random.next() % UInt64(names.count))]
                let value: Int64? = random.next() % 3 == 0 ? nil : Int64(bitPattern: random.next() % 1000)
                meters[name] = value
                reference[name] = value
            }
            #expect(meters == Meters(reference.map { ($0.key, $0.value) }))
        }
    }

    /// The number of this process's open descriptors on `file`.
    static func openDescriptors(on file: String) -> Int {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        let target = URL(fileURLWithPath: file).resolvingSymlinksInPath().path
        return entries.filter {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) == target
        }
        .count
    }

    @Test("close() refuses later calls with closed, releases the files with the last handle, and a reopen works")
    func closing() throws {
        let dir = try TemporaryDirectory()
        let first = try openLedger(dir), second = try openLedger(dir)
        try first.append(started("one"))
        first.close()
        first.close()
        #expect(first.isClosed && !second.isClosed)
        #expect(throws: LedgerError.closed(path: dir.child("ledger"))) { try first.append(started("two")) }
        #expect(throws: LedgerError.closed(path: dir.child("ledger"))) { try first.currentUsage() }
        #expect(throws: LedgerError.closed(path: dir.child("ledger"))) { try first.statistics() }
        #expect(LedgerError.closed(path: "p").code == "closed")
        // The other handle of the path goes on; the files stay open until it closes too.
        try second.append(started("two", "app/a2"))
        let dataFile = dir.child("ledger") + "/data.mdb"
        #expect(Self.openDescriptors(on: dataFile) >= 1)
        second.close()
        #expect(Self.openDescriptors(on: dataFile) == 0)
        let reopened = try openLedger(dir)
        #expect(try reopened.currentUsage().runningCount == 2)
    }
}

/// A small deterministic generator for the tests' own random choices.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
