import PropertyBased
import Testing
@testable import LedgerCore

/// The fast event decoder must never change what a line means: what it accepts decodes to the same event
/// as the general parser, and every line it declines gets the general parser's answer, error included.
@Suite("Fast event decoding")
struct FastDecoderTests {
    /// The outcome of the import path (fast first) and of the general parser alone, for one line.
    static func outcomes(_ line: String) -> (
        importPath: Result<UsageEvent, LedgerError>, general: Result<UsageEvent, LedgerError>
    ) {
        var copy = line
        return copy.withUTF8 { bytes in
            (
                Result { () throws(LedgerError) in try EventJSON.decodeUnvalidated(bytes) },
                Result { () throws(LedgerError) in try EventJSON.decodeGeneral(bytes) }
            )
        }
    }

    static func fast(_ line: String) -> UsageEvent? {
        var copy = line
        return copy.withUTF8 { FastEventDecoder.decode($0) }
    }

    @Test("decodes every plain ASCII event itself, to the event that was encoded")
    func acceptsPlainEvents() async {
        await propertyCheck(count: 400, input: Gen.uint64(in: 0...UInt64.max)) { seed in
            var random = RandomEvents(seed: seed)
            let event = random.event(number: 1)
            let line = EventJSON.encode(event)
            let outcome = Self.outcomes(line)
            #expect(outcome.importPath == outcome.general)
            if line.utf8.allSatisfy({ $0 < 0x80 && $0 != UInt8(ascii: "\\") }) {
                #expect(Self.fast(line) == event, "declined or changed: \(line)")
            }
        }
    }

    @Test("answers damaged lines exactly as the general parser does")
    func damagedLines() async {
        let alphabet = Array(#"{}[]:,"0123456789.eE-+ \tabcé\u"#.utf8)
        await propertyCheck(count: 1500, input: Gen.uint64(in: 0...UInt64.max)) { seed in
            var random = RandomEvents(seed: seed)
            var bytes = Array(EventJSON.encode(random.event(number: 1)).utf8)
            for _ in 0...random.next(3) {
                let at = Int(random.next(UInt64(bytes.count)))
                switch random.next(3) {
                case 0: bytes.remove(at: at)
                case 1: bytes.insert(alphabet[Int(random.next(UInt64(alphabet.count)))], at: at)
                default: bytes[at] = alphabet[Int(random.next(UInt64(alphabet.count)))]
                }
                if bytes.isEmpty { break }
            }
            let line = String(decoding: bytes, as: UTF8.self)
            let outcome = Self.outcomes(line)
            #expect(outcome.importPath == outcome.general, "line: \(line)")
        }
    }

    @Test(
        "agrees with the general parser on the edges of the format",
        arguments: [
            #"{"id":"e","kind":"started","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z","footprint":{"m":-0}}"#,
            #"{"id":"e","kind":"started","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z","footprint":{"m":9223372036854775807}}"#,
            #"{"id":"e","kind":"adjustment","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z","deltas":{"m":-9223372036854775808}}"#,
            #"{"id":"e","kind":"adjustment","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z","deltas":{"m":-9223372036854775809}}"#,
            #"{"id":"e","kind":"started","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z","footprint":{"m":18446744073709551616}}"#,
            #"{"id":"e","kind":"started","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z","footprint":{"m":1e3}}"#,
            #"{"id":"e","kind":"started","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z","footprint":{"m":1,"m":2}}"#,
            #"{"id":"e","kind":"started","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z","footprint":{}}"#,
            #"{"id":"e","id":"f","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z"}"#,
            #"{"seq":3,"recorded_at":"x","id":"e","kind":"stopped","resource":{"owner":"o","id":"a","type":"app"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z"}"#,
            #"{"seq":3.5,"id":"e","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z"}"#,
            #" { "id" : "e" , "kind" : "stopped" , "resource" : { "type" : "app" , "id" : "a" , "owner" : "o" } , "#
                + #""occurred_at" : "2026-01-01T00:00:00Z" } "#,
            #"{"id":"e","kind":"stopped","resource":{"type":"app","id":"a","owner":"o","owner":"p"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z"}"#,
            #"{"id":"e","kind":"stopped","resource":{"type":"app","id":"a"},"occurred_at":"2026-01-01T00:00:00Z"}"#,
            #"{"id":"e","kind":"halted","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z"}"#,
            #"{"id":"e","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"occurred_at":"2026-01-01 "#
                + #"00:00:00"}"#,
            #"{"id":"e","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z","extra":1}"#,
            #"{"id":"e","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z"} x"#,
            #"{"id":"e","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z","attributes":{"k":"v","k":"w"}}"#,
            #"{"id":"e\u0041","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z"}"#,
            #"{"id":"é","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
                + #""occurred_at":"2026-01-01T00:00:00Z"}"#,
            #"[1]"#,
            #""#,
        ])
    func edges(line: String) {
        let outcome = Self.outcomes(line)
        #expect(outcome.importPath == outcome.general)
        if let fast = Self.fast(line) { #expect(outcome.general == .success(fast)) }
    }

    @Test("attribute counts past the limit are left to the general parser's error")
    func attributeLimit() {
        let pairs = (0..<33).map { #""k\#($0)":"v""# }.joined(separator: ",")
        let line =
            #"{"id":"e","kind":"stopped","resource":{"type":"app","id":"a","owner":"o"},"#
            + #""occurred_at":"2026-01-01T00:00:00Z","attributes":{\#(pairs)}}"#
        #expect(Self.fast(line) == nil)
        #expect(
            Self.outcomes(line).importPath
                == .failure(.invalidField(field: "attributes", reason: "at most 32 attributes (got 33)")))
    }
}
