/// The JSON wire format v1: one object per event, one event per line in NDJSON.
public enum EventJSON {
    /// Fields the ledger assigns; accepted on input (so a feed can be replayed into another ledger) and
    /// ignored there.
    static let ledgerAssignedFields: Set<String> = ["seq", "recorded_at"]

    /// Decodes one event from the bytes of one line (without its line end) and validates it.
    public static func decode(_ line: UnsafeBufferPointer<UInt8>) throws(LedgerError) -> UsageEvent {
        let event = try decodeUnvalidated(line)
        try EventRules.validate(event)
        return event
    }

    /// Decodes one event without checking the value rules, for callers that append it right away
    /// (`Ledger.append` validates every event itself, so the import path does not pay twice).
    package static func decodeUnvalidated(_ line: UnsafeBufferPointer<UInt8>) throws(LedgerError) -> UsageEvent {
        if let event = FastEventDecoder.decode(line) { return event }
        return try decodeGeneral(line)
    }

    /// Decodes one event through the general parser and its `JSONValue` tree: every line the fast decoder
    /// declines, and the reference it is checked against.
    package static func decodeGeneral(_ line: UnsafeBufferPointer<UInt8>) throws(LedgerError) -> UsageEvent {
        let value: JSONValue
        do {
            value = try JSONParser.parse(line)
        } catch {
            throw .invalidJSON(reason: "\(error.reason) at byte \(error.offset + 1)")
        }
        return try decode(value)
    }

    /// Decodes one event from a string and validates it.
    public static func decode(_ text: String) throws(LedgerError) -> UsageEvent {
        var copy = text
        return try copy.withUTF8 { bytes in Result { () throws(LedgerError) in try decode(bytes) } }.get()
    }

    /// The `id` of a line that failed to decode, when one can still be read (for error reports).
    public static func peekID(_ line: UnsafeBufferPointer<UInt8>) -> String? {
        guard case .object(let members)? = try? JSONParser.parse(line),
            case .string(let id)? = members.first(where: { $0.key == "id" })?.value
        else { return nil }
        return id
    }

    /// Decodes one event from a parsed JSON value (validation of values' rules is separate).
    package static func decode(_ value: JSONValue) throws(LedgerError) -> UsageEvent {
        guard case .object(let members) = value else {
            throw .invalidJSON(reason: "expected an object, got \(value.typeName)")
        }
        var id: String?, kindText: String?, resource: [JSONMember]?, occurredText: String?
        var footprint: Meters?, deltas: Meters?, reason: String?, attributes = Attributes()
        for member in members {
            switch member.key {
            case "id": id = try string(member.value, field: "id")
            case "kind": kindText = try string(member.value, field: "kind")
            case "resource":
                guard case .object(let inner) = member.value else {
                    throw .invalidField(field: "resource", reason: "must be an object, got \(member.value.typeName)")
                }
                resource = inner
            case "occurred_at": occurredText = try string(member.value, field: "occurred_at")
            case "footprint": footprint = try meters(member.value, field: "footprint")
            case "deltas": deltas = try meters(member.value, field: "deltas")
            case "reason": reason = try string(member.value, field: "reason")
            case "attributes": attributes = try stringPairs(member.value, field: "attributes")
            default:
                guard ledgerAssignedFields.contains(member.key) else {
                    throw .invalidField(field: member.key, reason: "unknown field (wire format v1 has no such field)")
                }
            }
        }
        guard let id else { throw .invalidField(field: "id", reason: "is required") }
        guard let kindText else { throw .invalidField(field: "kind", reason: "is required") }
        guard let kind = EventKind(rawValue: kindText) else {
            throw .invalidField(
                field: "kind",
                reason: "'\(kindText.prefix(80))' is not one of started, was_running, stopped, adjustment")
        }
        guard let resource else { throw .invalidField(field: "resource", reason: "is required") }
        var type: String?, resourceID: String?, owner: String?
        for member in resource {
            switch member.key {
            case "type": type = try string(member.value, field: "resource.type")
            case "id": resourceID = try string(member.value, field: "resource.id")
            case "owner": owner = try string(member.value, field: "resource.owner")
            default:
                throw .invalidField(
                    field: "resource.\(member.key)", reason: "unknown field (a resource has type, id and owner)")
            }
        }
        guard let type else { throw .invalidField(field: "resource.type", reason: "is required") }
        guard let resourceID else { throw .invalidField(field: "resource.id", reason: "is required") }
        guard let owner else { throw .invalidField(field: "resource.owner", reason: "is required") }
        guard let occurredText else { throw .invalidField(field: "occurred_at", reason: "is required") }
        let occurredAt: Timestamp
        do {
            occurredAt = try Timestamp.parse(rfc3339: occurredText)
        } catch {
            throw .invalidField(
                field: "occurred_at",
                reason: "'\(occurredText.prefix(80))' is not an RFC 3339 timestamp: \(error.reason)")
        }
        return UsageEvent(
            id: id, kind: kind, resource: ResourceID(type: type, id: resourceID), owner: owner,
            occurredAt: occurredAt, footprint: footprint, deltas: deltas, reason: reason, attributes: attributes)
    }

    static func string(_ value: JSONValue, field: String) throws(LedgerError) -> String {
        guard case .string(let text) = value else {
            throw .invalidField(field: field, reason: "must be a string, got \(value.typeName)")
        }
        return text
    }

    static func meters(_ value: JSONValue, field: String) throws(LedgerError) -> Meters {
        guard case .object(let members) = value else {
            throw .invalidField(
                field: field, reason: "must be an object of meter names to integers, got \(value.typeName)")
        }
        var pairs: [(String, Int64)] = []
        pairs.reserveCapacity(members.count)
        for member in members {
            let path = "\(field).\(member.key)"
            guard case .number(let text) = member.value else {
                throw .invalidField(field: path, reason: "must be an integer, got \(member.value.typeName)")
            }
            pairs.append((member.key, try integer(text, field: path)))
        }
        return Meters(pairs)
    }

    /// Reads a JSON number's text as an exact signed 64-bit integer.
    public static func integer(_ text: String, field: String) throws(LedgerError) -> Int64 {
        if text.utf8.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") })
        {
            throw .invalidField(field: field, reason: "must be an integer, got \(text.prefix(40))")
        }
        guard let value = Int64(text) else {
            throw .overflow(field: field, reason: "\(text.prefix(40)) does not fit a signed 64-bit integer")
        }
        return value
    }

    static func stringPairs(_ value: JSONValue, field: String) throws(LedgerError) -> Attributes {
        guard case .object(let members) = value else {
            throw .invalidField(field: field, reason: "must be an object of strings, got \(value.typeName)")
        }
        guard members.count <= EventRules.maximumAttributes else {
            throw .invalidField(
                field: field, reason: "at most \(EventRules.maximumAttributes) attributes (got \(members.count))")
        }
        var pairs: [(String, String)] = []
        for member in members {
            pairs.append((member.key, try string(member.value, field: "\(field).\(member.key)")))
        }
        return Attributes(pairs)
    }

    /// The wire JSON of a submitted event (no `seq`, no `recorded_at`).
    public static func encode(_ event: UsageEvent) -> String {
        var writer = JSONWriter()
        writer.object { object in write(event, into: &object) }
        return writer.text
    }

    /// The wire JSON of a recorded event, with `seq` and `recorded_at` first.
    public static func encode(_ recorded: RecordedEvent) -> String {
        var writer = JSONWriter()
        writer.object { object in
            object.member("seq", recorded.seq)
            object.member("recorded_at", recorded.recordedAt.rfc3339)
            write(recorded.event, into: &object)
        }
        return writer.text
    }

    private static func write(_ event: UsageEvent, into object: inout JSONWriter.ObjectWriter) {
        object.member("id", event.id)
        object.member("kind", event.kind.rawValue)
        object.member("resource") { resource in
            resource.member("type", event.resource.type)
            resource.member("id", event.resource.id)
            resource.member("owner", event.owner)
        }
        object.member("occurred_at", event.occurredAt.rfc3339)
        if let footprint = event.footprint {
            object.member("footprint") { meters in for (name, value) in footprint { meters.member(name, value) } }
        }
        if let deltas = event.deltas {
            object.member("deltas") { meters in for (name, value) in deltas { meters.member(name, value) } }
        }
        if let reason = event.reason { object.member("reason", reason) }
        if !event.attributes.isEmpty {
            object.member("attributes") { pairs in for (key, value) in event.attributes { pairs.member(key, value) } }
        }
    }
}
