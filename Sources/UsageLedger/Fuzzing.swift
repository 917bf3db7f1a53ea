import LMDBStorage
import LedgerCore
#if canImport(Glibc)
import Glibc
#endif

/// Entry points for the fuzz targets under `Tests/Fuzz`: each decodes arbitrary bytes the way the
/// ledger does and checks that whatever decodes re-encodes to the same value. Errors are the expected
/// answer to bad bytes; a crash, a hang or a round-trip mismatch (a `precondition` failure) is a bug.
package enum FuzzEntryPoints {
    /// Decodes `bytes` as one NDJSON line; a decoded event must survive JSON encoding and decoding, and
    /// whatever the fast decoder accepts must decode to the same event through the general parser.
    package static func eventJSON(_ bytes: UnsafeRawBufferPointer) {
        let line = bytes.bindMemory(to: UInt8.self)
        if let fast = FastEventDecoder.decode(line) {
            let general = try? EventJSON.decodeGeneral(line)
            precondition(
                general == fast,
                "the fast decoder accepted a line the general parser reads differently: \(EventJSON.encode(fast))")
        }
        guard let event = try? EventJSON.decode(line) else { return }
        let again = try? EventJSON.decode(EventJSON.encode(event))
        precondition(again == event, "an event decoded from JSON did not round-trip: \(EventJSON.encode(event))")
    }

    /// Decodes `bytes` as a stored value. The first byte picks the decoder: an event record (its CRC-32
    /// recomputed first, so that the fuzzer reaches the parser behind it), an event record as given, a
    /// resource state, an hourly row, owner totals, a compaction base, an hourly key, a resource entry, an
    /// owner-hour sum, a steady-span key or a steady-span value.
    package static func storedRecord(_ bytes: UnsafeRawBufferPointer) {
        guard let selector = bytes.first else { return }
        let rest = UnsafeRawBufferPointer(rebasing: bytes.dropFirst())
        switch selector % 11 {
        case 0:
            var record = Array(rest)
            var checksum = ByteWriter(capacity: 4)
            checksum.writeBigEndian(CRC32.checksum(rest))
            record += checksum.bytes
            record.withUnsafeBytes { checkEventRecord($0) }
        case 1: checkEventRecord(rest)
        case 2:
            guard let state = try? ProjectionFormat.decodeState(rest) else { return }
            let again = ProjectionFormat.encode(state).withUnsafeBytes { try? ProjectionFormat.decodeState($0) }
            precondition(again == state, "a resource state did not round-trip")
            precondition(
                (try? ProjectionFormat.checkpoint(ofState: rest)) == state.accruedUntil,
                "a state's checkpoint read alone differs")
        case 3:
            guard let row = try? ProjectionFormat.decodeRow(rest) else { return }
            let again = ProjectionFormat.encode(row).withUnsafeBytes { try? ProjectionFormat.decodeRow($0) }
            precondition(again == row, "an hourly row did not round-trip")
        case 4:
            guard let totals = try? ProjectionFormat.decodeTotals(rest) else { return }
            let again = ProjectionFormat.encode(totals).withUnsafeBytes { try? ProjectionFormat.decodeTotals($0) }
            precondition(again == totals, "owner totals did not round-trip")
        case 5:
            guard let base = try? ProjectionFormat.decodeBase(rest) else { return }
            let again = ProjectionFormat.encode(base).withUnsafeBytes { try? ProjectionFormat.decodeBase($0) }
            precondition(again == base, "a compaction base did not round-trip")
        case 6: _ = try? ProjectionFormat.decodeHourlyKey(rest)
        case 7: _ = try? ResourceEntryCodec.decode(rest)
        case 9:
            guard let key = try? SteadySpanKeyCodec.decode(rest) else { return }
            let again = SteadySpanKeyCodec.encode(key).withUnsafeBytes { try? SteadySpanKeyCodec.decode($0) }
            precondition(again == key, "a steady-span key did not round-trip")
        case 10:
            guard let span = try? SteadySpanValueCodec.decode(rest) else { return }
            let again = SteadySpanValueCodec.encode(span).withUnsafeBytes { try? SteadySpanValueCodec.decode($0) }
            precondition(again?.hours == span.hours && again?.footprint == span.footprint, "a span did not round-trip")
        default:
            guard let row = try? OwnerRow(decoding: rest) else { return }
            let again = row.encoded().withUnsafeBytes { try? OwnerRow(decoding: $0) }
            precondition(again == row, "an owner-hour sum did not round-trip")
        }
    }

    /// What a fuzz target does when built without libFuzzer: runs `entry` over each file named on the
    /// command line (a corpus replay, as the tests do), or with `--write-seeds DIR` writes `seeds` there.
    /// Returns the process's exit status.
    package static func replayCommandLine(
        _ arguments: [String], entry: (UnsafeRawBufferPointer) -> Void,
        seeds: [(name: String, bytes: [UInt8])] = []
    ) -> Int32 {
        if arguments.count == 3, arguments[1] == "--write-seeds" {
            for (name, bytes) in seeds {
                guard let file = fopen(arguments[2] + "/" + name, "wb") else { return 2 }
                fwrite(bytes, 1, bytes.count, file)
                fclose(file)
            }
            return 0
        }
        for path in arguments.dropFirst() {
            guard let file = fopen(path, "rb") else {
                print("cannot open \(path)")
                return 2
            }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let got = fread(&buffer, 1, buffer.count, file)
                if got <= 0 { break }
                bytes += buffer[0..<got]
            }
            fclose(file)
            bytes.withUnsafeBytes { entry($0) }
        }
        print("replayed \(arguments.count - 1) inputs")
        return 0
    }

    /// Seeds for `storedRecord`: one valid value of each kind, behind its selector byte.
    package static func storedRecordSeeds() -> [(name: String, bytes: [UInt8])] {
        let resource = ResourceID(type: "app", id: "web-1")
        let at = Timestamp(microseconds: 1_795_000_000_000_000)
        let events = [
            UsageEvent(
                id: "e-1", kind: .started, resource: resource, owner: "org-1", occurredAt: at,
                footprint: ["instances": 2, "memory_mb": 512], attributes: ["region": "eu"]),
            UsageEvent(
                id: "e-2", kind: .wasRunning, resource: resource, owner: "org-1", occurredAt: at,
                footprint: ["instances": 1]),
            UsageEvent(
                id: "e-3", kind: .stopped, resource: resource, owner: "org-1", occurredAt: at,
                reason: "scaled to zero"),
            UsageEvent(
                id: "e-4", kind: .adjustment, resource: resource, owner: "org-1", occurredAt: at,
                deltas: ["bytes": -42], reason: "refund"),
        ]
        var seeds: [(String, [UInt8])] = []
        for (n, event) in events.enumerated() {
            // Selector 0 recomputes the checksum, so its seed is the record without its last four bytes.
            let fields = EventRecord.Fields(
                event, recordedAt: at, resourceNumber: UInt64(n + 1),
                footprintNumbers: Array(1...UInt64(max(1, event.footprint?.count ?? 0))),
                deltaNumbers: Array(1...UInt64(max(1, event.deltas?.count ?? 0))))
            let record = EventRecord.record(payload: EventRecord.payload(of: fields), recordedAt: at)
            seeds.append(("event-record-\(n)-crc-fixed", [0] + record.dropLast(EventRecord.trailerSize)))
            seeds.append(("event-record-\(n)", [1] + record))
        }
        var state = ResourceState(resource: resource, owner: "org-1")
        state.running = true
        state.runStartedAt = at
        state.footprintSince = at
        state.footprint = ["instances": 2]
        state.accruedUntil = at
        state.checkpointRunning = true
        state.checkpointFootprint = ["instances": 2]
        state.adjustmentTotals = ["bytes": -42]
        seeds.append(("resource-state", [2] + ProjectionFormat.encode(state)))
        var row = UsageAmounts()
        row.runningMicroseconds = 3_600_000_000
        row.meterMicroseconds = ["instances": 7_200_000_000]
        row.adjustments = ["bytes": -42]
        seeds.append(("hourly-row", [3] + ProjectionFormat.encode(row)))
        var totals = ProjectionFormat.OwnerTotals()
        try? totals.add(["instances": 2, "memory_mb": 512], sign: 1)
        seeds.append(("owner-totals", [4] + ProjectionFormat.encode(totals)))
        seeds.append(
            (
                "compaction-base",
                [5]
                    + ProjectionFormat.encode(
                        CompactionBase(lastOccurredAt: at, unmatchedStops: 1, adjustmentTotals: ["bytes": 5]))
            ))
        seeds.append(
            ("hourly-key", [6] + ProjectionFormat.hourlyKey(hour: at.microseconds, owner: "org-1", resource: resource)))
        seeds.append(("resource-value", [7] + ResourceEntryCodec.encode(ResourceEntry(number: 12, owner: "org-1"))))
        var ownerRow = OwnerRow()
        try? ownerRow.add(row, sign: 1)
        try? ownerRow.add(row, sign: 1)
        seeds.append(("owner-hour", [8] + ownerRow.encoded()))
        let spanKey = SteadySpanKey(owner: "org-1", resource: resource, start: at.hourFloor.microseconds)
        seeds.append(("steady-key", [9] + SteadySpanKeyCodec.encode(spanKey)))
        seeds.append(("steady-value", [10] + SteadySpanValueCodec.encode((720, ["instances": 2, "memory_mb": 0]))))
        return seeds
    }

    private static func checkEventRecord(_ record: UnsafeRawBufferPointer) {
        guard let fields = try? EventRecord.fields(of: record, seq: 1) else { return }
        let again = EventRecord.record(payload: EventRecord.payload(of: fields), recordedAt: fields.recordedAt)
            .withUnsafeBytes { try? EventRecord.fields(of: $0, seq: 1) }
        precondition(again == fields, "an event record did not round-trip")
    }
}
