/// A decoder for the common shape of an event line, straight from its bytes into a `UsageEvent`: ASCII
/// only, strings without escapes, integers without fraction or exponent, known fields each at most once.
///
/// It builds no `JSONValue` tree, which made up most of the cost of importing NDJSON (a callgrind profile
/// of the import path put the tree's parsing and decoding at 29% of instructions). Anything else (and every
/// malformed line) makes it return nil, and the general parser then decodes the line and names the
/// problem, so errors and their precedence are exactly those of `JSONParser` and `EventJSON.decode(_:)`.
/// What it accepts, it decodes to the same event as the general path (checked by the `fuzz-event-json`
/// target and by tests).
package struct FastEventDecoder {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// The event in `line`, or nil when the line is not of the common shape (or not valid).
    package static func decode(_ line: UnsafeBufferPointer<UInt8>) -> UsageEvent? {
        guard ASCII.isASCII(line) else { return nil }
        var decoder = FastEventDecoder(line)
        return decoder.event()
    }

    private mutating func event() -> UsageEvent? {
        var seen: UInt16 = 0
        var id: String?, kind: EventKind?, resource: (type: String, id: String, owner: String)?, occurredAt: Timestamp?
        var footprint: Meters?, deltas: Meters?, reason: String?, attributes = Attributes()
        guard var more = openObject() else { return nil }
        while more {
            guard let key = memberKey() else { return nil }
            let field: UInt16
            if Self.equal(key, "id") {
                field = 1
                guard let value = string() else { return nil }
                id = value
            } else if Self.equal(key, "kind") {
                field = 2
                guard let value = string(), let parsed = EventKind(rawValue: value) else { return nil }
                kind = parsed
            } else if Self.equal(key, "resource") {
                field = 4
                guard let value = resourceObject() else { return nil }
                resource = value
            } else if Self.equal(key, "occurred_at") {
                field = 8
                guard let value = string(), let parsed = try? Timestamp(rfc3339: value) else { return nil }
                occurredAt = parsed
            } else if Self.equal(key, "footprint") {
                field = 16
                guard let value = meters() else { return nil }
                footprint = value
            } else if Self.equal(key, "deltas") {
                field = 32
                guard let value = meters() else { return nil }
                deltas = value
            } else if Self.equal(key, "reason") {
                field = 64
                guard let value = string() else { return nil }
                reason = value
            } else if Self.equal(key, "attributes") {
                field = 128
                guard let value = attributePairs() else { return nil }
                attributes = value
            } else if Self.equal(key, "seq") {
                field = 256
                guard integer() != nil else { return nil }
            } else if Self.equal(key, "recorded_at") {
                field = 512
                guard rawString() != nil else { return nil }
            } else {
                return nil
            }
            guard seen & field == 0 else { return nil }
            seen |= field
            guard let next = closeOrContinue() else { return nil }
            more = next
        }
        skipWhitespace()
        guard index == bytes.count, let id, let kind, let resource, let occurredAt else { return nil }
        return UsageEvent(
            id: id, kind: kind, resource: ResourceID(type: resource.type, id: resource.id), owner: resource.owner,
            occurredAt: occurredAt, footprint: footprint, deltas: deltas, reason: reason, attributes: attributes)
    }

    private mutating func resourceObject() -> (type: String, id: String, owner: String)? {
        var type: String?, id: String?, owner: String?
        guard var more = openObject() else { return nil }
        while more {
            guard let key = memberKey(), let value = string() else { return nil }
            if Self.equal(key, "type"), type == nil {
                type = value
            } else if Self.equal(key, "id"), id == nil {
                id = value
            } else if Self.equal(key, "owner"), owner == nil {
                owner = value
            } else {
                return nil
            }
            guard let next = closeOrContinue() else { return nil }
            more = next
        }
        guard let type, let id, let owner else { return nil }
        return (type, id, owner)
    }

    private mutating func meters() -> Meters? {
        var names: [UnsafeBufferPointer<UInt8>] = []
        var pairs: [(String, Int64)] = []
        guard var more = openObject() else { return nil }
        while more {
            guard let key = memberKey(), let value = integer(), !names.contains(where: { Self.equal($0, key) }) else {
                return nil
            }
            names.append(key)
            pairs.append((String(decoding: key, as: UTF8.self), value))
            guard let next = closeOrContinue() else { return nil }
            more = next
        }
        return Meters(pairs)
    }

    private mutating func attributePairs() -> Attributes? {
        var keys: [UnsafeBufferPointer<UInt8>] = []
        var pairs: [(String, String)] = []
        guard var more = openObject() else { return nil }
        while more {
            guard keys.count < EventRules.maximumAttributes, let key = memberKey(), let value = string(),
                !keys.contains(where: { Self.equal($0, key) })
            else { return nil }
            keys.append(key)
            pairs.append((String(decoding: key, as: UTF8.self), value))
            guard let next = closeOrContinue() else { return nil }
            more = next
        }
        return Attributes(pairs)
    }

    // MARK: - Tokens

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// Consumes `{`: true when members follow, false for `{}`, nil when no object starts here.
    private mutating func openObject() -> Bool? {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        index += 1
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "}") else { return true }
        index += 1
        return false
    }

    /// A member's key and the `:` after it.
    private mutating func memberKey() -> UnsafeBufferPointer<UInt8>? {
        guard let key = rawString() else { return nil }
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
        index += 1
        return key
    }

    /// After a member: true at `,`, false at the closing `}`.
    private mutating func closeOrContinue() -> Bool? {
        skipWhitespace()
        guard index < bytes.count else { return nil }
        index += 1
        switch bytes[index - 1] {
        case UInt8(ascii: ","): return true
        case UInt8(ascii: "}"): return false
        default: return nil
        }
    }

    /// A string's bytes, when it has no escapes and no control characters.
    private mutating func rawString() -> UnsafeBufferPointer<UInt8>? {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        index += 1
        let start = index
        while index < bytes.count {
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                index += 1
                return UnsafeBufferPointer(rebasing: bytes[start..<(index - 1)])
            }
            if c == UInt8(ascii: "\\") || c < 0x20 { return nil }
            index += 1
        }
        return nil
    }

    private mutating func string() -> String? {
        rawString().map { String(decoding: $0, as: UTF8.self) }
    }

    /// An integer written without fraction, exponent or leading zeros, that fits 64 bits.
    private mutating func integer() -> Int64? {
        skipWhitespace()
        let negative = index < bytes.count && bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        let start = index
        var magnitude: UInt64 = 0
        while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
            let (times10, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(bytes[index] - 0x30))
            guard !overflow1, !overflow2 else { return nil }
            magnitude = sum
            index += 1
        }
        let digits = index - start
        guard digits > 0, !(digits > 1 && bytes[start] == UInt8(ascii: "0")) else { return nil }
        if index < bytes.count,
            bytes[index] == UInt8(ascii: ".") || bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")
        {
            return nil
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { return nil }
        return Int64(magnitude)
    }

    private static func equal(_ key: UnsafeBufferPointer<UInt8>, _ literal: StaticString) -> Bool {
        key.count == literal.utf8CodeUnitCount
            && key.elementsEqual(UnsafeBufferPointer(start: literal.utf8Start, count: key.count))
    }

    private static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        a.count == b.count && a.elementsEqual(b)
    }
}

/// Checking that bytes are ASCII, eight at a time: the common case of every string the ledger reads,
/// which then needs no further UTF-8 validation.
package enum ASCII {
    /// Whether every byte is below 0x80.
    package static func isASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        isASCII(UnsafeRawBufferPointer(bytes))
    }

    /// Whether every byte is below 0x80.
    package static func isASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        var combined: UInt64 = 0
        while offset + 8 <= bytes.count {
            combined |= bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < bytes.count {
            combined |= UInt64(bytes[offset])
            offset += 1
        }
        return combined & 0x8080_8080_8080_8080 == 0
    }
}
