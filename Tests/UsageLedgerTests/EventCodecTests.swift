import PropertyBased
import Testing
@testable import LedgerCore

@Suite("Wire format v1")
struct EventCodecTests {
    static let examples = [
        #"{"id":"e-1001","kind":"started","resource":{"type":"app","id":"9f3c","owner":"org-7"},"#
            + #""occurred_at":"2026-11-01T10:00:00.250Z","footprint":{"instances":2,"memory_mb":512},"#
            + #""attributes":{"process_type":"web"}}"#,
        #"{"id":"e-1002","kind":"adjustment","resource":{"type":"job","id":"j-88","owner":"org-7"},"#
            + #""occurred_at":"2026-11-01T10:30:00Z","deltas":{"network_bytes":1048576,"storage_bytes":-2048},"#
            + #""reason":"reconcile_final"}"#,
        #"{"id":"e-1003","kind":"was_running","resource":{"type":"service_instance","id":"db-1","owner":"org-7"},"#
            + #""occurred_at":"2026-11-01T10:00:00Z","footprint":{}}"#,
        #"{"id":"e-1004","kind":"stopped","resource":{"type":"app","id":"9f3c","owner":"org-7"},"#
            + #""occurred_at":"2026-11-01T12:00:00Z","reason":"absent_at_reseed"}"#,
    ]

    @Test("every kind decodes and encodes back to the same JSON", arguments: examples)
    func roundTrip(line: String) throws {
        let event = try EventJSON.decode(line)
        #expect(EventJSON.encode(event) == line)
        #expect(try EventJSON.decode(EventJSON.encode(event)) == event)
    }

    @Test("a zero meter stays distinct from an absent one")
    func absentVersusZero() throws {
        let withZero = try EventJSON.decode(
            #"{"id":"z","kind":"started","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-11-01T10:00:00Z","footprint":{"gpu":0}}"#
        )
        let without = try EventJSON.decode(
            #"{"id":"z","kind":"started","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-11-01T10:00:00Z","footprint":{}}"#
        )
        #expect(withZero.footprint?["gpu"] == 0)
        #expect(without.footprint?["gpu"] == nil)
        #expect(withZero != without)
    }

    @Test("seq and recorded_at from the feed are accepted and ignored")
    func ledgerFieldsIgnored() throws {
        let line =
            #"{"seq":7,"recorded_at":"2026-11-01T10:00:01Z","id":"e","kind":"stopped","resource":{"type":"app","#
            + #""id":"a","owner":"o"},"occurred_at":"2026-11-01T10:00:00Z"}"#
        #expect(try EventJSON.decode(line).id == "e")
    }

    static let base = #""resource":{"type":"app","id":"a","owner":"o"},"occurred_at":"2026-11-01T10:00:00Z""#

    @Test(
        "each rejection has its code and a message that names the field",
        arguments: [
            ("not json", "invalid_json", "not a JSON object: invalid literal at byte 1"),
            ("@", "invalid_json", "not a JSON object: unexpected character '@' at byte 1"),
            ("[1]", "invalid_json", "not a JSON object: expected an object, got an array"),
            (#"{"id":"e","id":"f"}"#, "invalid_json", "not a JSON object: duplicate key 'id' at byte 11"),
            (#"{"kind":"started",\#(base),"footprint":{}}"#, "invalid_field", "id: is required"),
            (#"{"id":"","kind":"stopped",\#(base)}"#, "invalid_field", "id: must be 1 to 128 bytes of UTF-8 (got 0)"),
            (
                #"{"id":"\#(String(repeating: "x", count: 129))","kind":"stopped",\#(base)}"#, "invalid_field",
                "id: must be 1 to 128 bytes of UTF-8 (got 129)"
            ),
            (
                #"{"id":"a\u0001b","kind":"stopped",\#(base)}"#, "invalid_field",
                "id: must not contain control characters"
            ),
            (
                #"{"id":"e","kind":"paused",\#(base)}"#, "invalid_field",
                "kind: 'paused' is not one of started, was_running, stopped, adjustment"
            ),
            (
                #"{"id":"e","kind":"started",\#(base)}"#, "invalid_field",
                "footprint: is required on 'started' events (it may be {})"
            ),
            (
                #"{"id":"e","kind":"stopped",\#(base),"footprint":{}}"#, "invalid_field",
                "footprint: is only allowed on 'started' and 'was_running' events"
            ),
            (
                #"{"id":"e","kind":"adjustment",\#(base),"deltas":{}}"#, "invalid_field",
                "deltas: is required and must not be empty on 'adjustment' events"
            ),
            (
                #"{"id":"e","kind":"started",\#(base),"footprint":{"memory_mb":-1}}"#, "invalid_field",
                "footprint.memory_mb: must not be negative (got -1)"
            ),
            (
                #"{"id":"e","kind":"started",\#(base),"footprint":{"memory_mb":1.5}}"#, "invalid_field",
                "footprint.memory_mb: must be an integer, got 1.5"
            ),
            (
                #"{"id":"e","kind":"started",\#(base),"footprint":{"memory_mb":"512"}}"#, "invalid_field",
                "footprint.memory_mb: must be an integer, got a string"
            ),
            (
                #"{"id":"e","kind":"started",\#(base),"footprint":{"Memory":1}}"#, "invalid_field",
                "footprint: meter name 'Memory' does not match ^[a-z][a-z0-9_]{0,63}$"
            ),
            (
                #"{"id":"e","kind":"started",\#(base),"footprint":{"memory_mb":9223372036854775808}}"#, "overflow",
                "footprint.memory_mb: 9223372036854775808 does not fit a signed 64-bit integer"
            ),
            (
                #"{"id":"e","kind":"adjustment",\#(base),"deltas":{"bytes":-9223372036854775809}}"#, "overflow",
                "deltas.bytes: -9223372036854775809 does not fit a signed 64-bit integer"
            ),
            (
                #"{"id":"e","kind":"stopped","resource":{"type":"App","id":"a","owner":"o"},"#
                    + #""occurred_at":"2026-11-01T10:00:00Z"}"#,
                "invalid_field", "resource.type: 'App' does not match ^[a-z][a-z0-9_.-]{0,31}$"
            ),
            (
                #"{"id":"e","kind":"stopped","resource":{"type":"app","id":"a"},"occurred_at":"2026-11-01T10:00:00Z"}"#,
                "invalid_field", "resource.owner: is required"
            ),
            (
                #"{"id":"e","kind":"stopped","resource":{"type":"app","id":"a","owner":"o","zone":"z"},"#
                    + #""occurred_at":"2026-11-01T10:00:00Z"}"#,
                "invalid_field", "resource.zone: unknown field (a resource has type, id and owner)"
            ),
            (
                #"{"id":"e","kind":"stopped",\#(base),"colour":"red"}"#, "invalid_field",
                "colour: unknown field (wire format v1 has no such field)"
            ),
            (
                #"{"id":"e","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
                    + #""occurred_at":"2026-11-01T10:00:00"}"#,
                "invalid_field",
                "occurred_at: '2026-11-01T10:00:00' is not an RFC 3339 timestamp: missing time zone: end with 'Z' or "
                    + "an offset like '+01:00'"
            ),
            (
                #"{"id":"e","kind":"started",\#(base),"footprint":{},"reason":"x"}"#, "invalid_field",
                "reason: is only allowed on 'adjustment' and 'stopped' events"
            ),
            (
                #"{"id":"e","kind":"stopped",\#(base),"reason":"\#(String(repeating: "r", count: 65))"}"#,
                "invalid_field", "reason: must be 1 to 64 bytes (got 65)"
            ),
            (
                #"{"id":"e","kind":"stopped",\#(base),"attributes":{"k":1}}"#, "invalid_field",
                "attributes.k: must be a string, got a number"
            ),
            (
                #"{"id":"e","kind":"stopped",\#(base),"attributes":{"k":"\#(String(repeating: "v", count: 257))"}}"#,
                "invalid_field", "attributes.k: value must be at most 256 bytes (got 257)"
            ),
        ])
    func rejection(line: String, code: String, message: String) {
        #expect {
            try EventJSON.decode(line)
        } throws: { error in
            guard let error = error as? LedgerError else { return false }
            if error.code != code || error.message != message {
                Issue.record("got \(error.code): \(error.message)")
                return false
            }
            return true
        }
    }

    @Test("at most 32 attributes")
    func attributeLimit() {
        let pairs = (0..<33).map { #""k\#($0)":"v""# }.joined(separator: ",")
        #expect(throws: LedgerError.invalidField(field: "attributes", reason: "at most 32 attributes (got 33)")) {
            try EventJSON.decode(#"{"id":"e","kind":"stopped",\#(Self.base),"attributes":{\#(pairs)}}"#)
        }
    }

    @Test("any valid event survives JSON encoding and decoding unchanged")
    func propertyRoundTrip() async {
        await propertyCheck(count: 300, input: Gen.uint64(in: 0...UInt64.max)) { seed in
            var random = RandomEvents(seed: seed)
            let event = random.event(number: 1)
            #expect(throws: Never.self) { try EventRules.validate(event) }
            let decoded = try? EventJSON.decode(EventJSON.encode(event))
            #expect(decoded == event)
        }
    }
}

/// Deterministic random valid events, for property tests.
struct RandomEvents {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next(_ bound: UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return (z ^ (z >> 31)) % bound
    }

    mutating func text(_ maximum: UInt64, alphabet: [Character] = Array("abcdefgh-_.é😀xyz019 \"\\/")) -> String {
        String((0...next(maximum)).map { _ in alphabet[Int(next(UInt64(alphabet.count)))] })
    }

    mutating func meterValue(signed: Bool) -> Int64 {
        switch next(4) {
        case 0: return signed ? Int64.min : 0
        case 1: return Int64.max
        default: return signed ? Int64(bitPattern: next(UInt64.max)) : Int64(next(UInt64(Int64.max)))
        }
    }

    mutating func meters(signed: Bool, nonEmpty: Bool) -> Meters {
        let count = next(4) + (nonEmpty ? 1 : 0)
        return Meters((0..<count).map { i in ("m\(i)_\(next(3))", meterValue(signed: signed)) })
    }

    mutating func event(number: Int) -> UsageEvent {
        let kind = EventKind.allCases[Int(next(4))]
        let at = Timestamp(
            microseconds: Timestamp.earliest.microseconds
                + Int64(next(UInt64(Timestamp.latest.microseconds - Timestamp.earliest.microseconds))))
        var event = UsageEvent(
            id: "e\(number)-" + text(20), kind: kind, resource: ResourceID(type: "app", id: text(30)),
            owner: "org-" + text(10), occurredAt: at)
        switch kind {
        case .started, .wasRunning: event.footprint = meters(signed: false, nonEmpty: false)
        case .adjustment:
            event.deltas = meters(signed: true, nonEmpty: true)
            if next(2) == 0 { event.reason = "r" + text(10) }
        case .stopped:
            if next(2) == 0 { event.reason = "r" + text(10) }
        }
        event.attributes = Attributes((0..<next(5)).map { ("k\($0)", text(40)) })
        return event
    }
}
