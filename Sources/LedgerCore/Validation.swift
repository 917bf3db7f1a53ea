/// The rules of wire format v1, applied to every event before it is appended.
public enum EventRules {
    /// Longest `id`, `resource.id` and `resource.owner`, in UTF-8 bytes.
    public static let maximumIdentifierBytes = 128
    /// Longest `reason`, in UTF-8 bytes.
    public static let maximumReasonBytes = 64
    /// Most attributes on one event.
    public static let maximumAttributes = 32
    /// Longest attribute key, in UTF-8 bytes.
    public static let maximumAttributeKeyBytes = 64
    /// Longest attribute value, in UTF-8 bytes.
    public static let maximumAttributeValueBytes = 256

    /// Checks `event` against every rule of the format and throws the first broken one, naming the field.
    public static func validate(_ event: UsageEvent) throws(LedgerError) {
        try checkIdentifier(event.id, field: "id")
        try checkResourceType(event.resource.type)
        try checkIdentifier(event.resource.id, field: "resource.id")
        try checkIdentifier(event.owner, field: "resource.owner")
        guard event.occurredAt.isInSupportedRange else {
            throw .invalidField(field: "occurred_at", reason: "must lie in the years 0000 to 9999")
        }
        switch event.kind {
        case .started, .wasRunning:
            guard let footprint = event.footprint else {
                throw .invalidField(
                    field: "footprint", reason: "is required on '\(event.kind.rawValue)' events (it may be {})")
            }
            for (name, value) in footprint {
                try checkMeterName(name, field: "footprint")
                guard value >= 0 else {
                    throw .invalidField(field: "footprint.\(name)", reason: "must not be negative (got \(value))")
                }
            }
            guard event.deltas == nil else {
                throw .invalidField(field: "deltas", reason: "is only allowed on 'adjustment' events")
            }
            guard event.reason == nil else {
                throw .invalidField(field: "reason", reason: "is only allowed on 'adjustment' and 'stopped' events")
            }
        case .stopped:
            guard event.footprint == nil else {
                throw .invalidField(field: "footprint", reason: "is only allowed on 'started' and 'was_running' events")
            }
            guard event.deltas == nil else {
                throw .invalidField(field: "deltas", reason: "is only allowed on 'adjustment' events")
            }
        case .adjustment:
            guard event.footprint == nil else {
                throw .invalidField(field: "footprint", reason: "is only allowed on 'started' and 'was_running' events")
            }
            guard let deltas = event.deltas, !deltas.isEmpty else {
                throw .invalidField(field: "deltas", reason: "is required and must not be empty on 'adjustment' events")
            }
            for (name, _) in deltas { try checkMeterName(name, field: "deltas") }
        }
        if let reason = event.reason {
            guard !reason.isEmpty, reason.utf8.count <= maximumReasonBytes else {
                throw .invalidField(
                    field: "reason", reason: "must be 1 to \(maximumReasonBytes) bytes (got \(reason.utf8.count))")
            }
            guard !hasControlCharacter(reason) else {
                throw .invalidField(field: "reason", reason: "must not contain control characters")
            }
        }
        guard event.attributes.count <= maximumAttributes else {
            throw .invalidField(
                field: "attributes", reason: "at most \(maximumAttributes) attributes (got \(event.attributes.count))")
        }
        for (key, value) in event.attributes {
            guard !key.isEmpty, key.utf8.count <= maximumAttributeKeyBytes else {
                throw .invalidField(
                    field: "attributes",
                    reason: "key '\(key.prefix(80))' must be 1 to \(maximumAttributeKeyBytes) bytes")
            }
            guard value.utf8.count <= maximumAttributeValueBytes else {
                throw .invalidField(
                    field: "attributes.\(key)",
                    reason: "value must be at most \(maximumAttributeValueBytes) bytes (got \(value.utf8.count))")
            }
        }
    }

    static func checkIdentifier(_ value: String, field: String) throws(LedgerError) {
        let length = value.utf8.count
        guard length >= 1, length <= maximumIdentifierBytes else {
            throw .invalidField(
                field: field, reason: "must be 1 to \(maximumIdentifierBytes) bytes of UTF-8 (got \(length))")
        }
        guard !hasControlCharacter(value) else {
            throw .invalidField(field: field, reason: "must not contain control characters")
        }
    }

    /// `^[a-z][a-z0-9_.-]{0,31}$`
    static func checkResourceType(_ value: String) throws(LedgerError) {
        let bytes = value.utf8
        let ok =
            !bytes.isEmpty && bytes.count <= 32 && isLower(bytes[bytes.startIndex])
            && bytes.dropFirst().allSatisfy {
                isLower($0) || isDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
                    || $0 == UInt8(ascii: "-")
            }
        guard ok else {
            throw .invalidField(
                field: "resource.type", reason: "'\(value.prefix(80))' does not match ^[a-z][a-z0-9_.-]{0,31}$")
        }
    }

    /// `^[a-z][a-z0-9_]{0,63}$`
    public static func checkMeterName(_ name: String, field: String) throws(LedgerError) {
        let bytes = name.utf8
        let ok =
            !bytes.isEmpty && bytes.count <= 64 && isLower(bytes[bytes.startIndex])
            && bytes.dropFirst().allSatisfy { isLower($0) || isDigit($0) || $0 == UInt8(ascii: "_") }
        guard ok else {
            throw .invalidField(
                field: field, reason: "meter name '\(name.prefix(80))' does not match ^[a-z][a-z0-9_]{0,63}$")
        }
    }

    private static func isLower(_ c: UInt8) -> Bool { c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z") }
    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    /// C0 controls, DEL and C1 controls.
    static func hasControlCharacter(_ value: String) -> Bool {
        // In UTF-8, C1 controls (U+0080 to U+009F) are 0xC2 followed by 0x80...0x9F.
        var previous: UInt8 = 0
        for byte in value.utf8 {
            if byte < 0x20 || byte == 0x7F || (previous == 0xC2 && byte >= 0x80 && byte <= 0x9F) { return true }
            previous = byte
        }
        return false
    }
}
