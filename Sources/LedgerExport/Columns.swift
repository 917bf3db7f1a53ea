import LedgerCore
import PostgresNIO
import UsageLedger

/// A batch of events as one array per column: one statement binds 13 arrays, whatever the batch's size.
struct EventColumns {
    var seq: [Int64] = [], id: [String] = [], kind: [String] = []
    var resourceType: [String] = [], resourceID: [String] = [], owner: [String] = []
    var occurredAt: [String] = [], recordedAt: [String] = []
    /// JSON text, or "" for SQL NULL (no JSON document is empty).
    var footprint: [String] = [], deltas: [String] = [], attributes: [String] = []
    var reason: [String] = [], hasReason: [Bool] = []

    mutating func add(_ recorded: RecordedEvent) {
        let event = recorded.event
        seq.append(Int64(recorded.seq))
        id.append(event.id)
        kind.append(event.kind.rawValue)
        resourceType.append(event.resource.type)
        resourceID.append(event.resource.id)
        owner.append(event.owner)
        occurredAt.append(event.occurredAt.rfc3339)
        recordedAt.append(recorded.recordedAt.rfc3339)
        footprint.append(event.footprint.map { json($0.entries.map { ($0.name, Int128($0.value)) }) } ?? "")
        deltas.append(event.deltas.map { json($0.entries.map { ($0.name, Int128($0.value)) }) } ?? "")
        attributes.append(
            event.attributes.isEmpty ? "" : json(strings: event.attributes.entries.map { ($0.key, $0.value) }))
        reason.append(event.reason ?? "")
        hasReason.append(event.reason != nil)
    }

    func bind(into binds: inout PostgresBindings) {
        binds.append(seq)
        for column in [id, kind, resourceType, resourceID, owner, occurredAt, recordedAt, footprint, deltas, reason] {
            binds.append(column)
        }
        binds.append(hasReason)
        binds.append(attributes)
    }
}

/// A batch of events as the rows of a `COPY usage_events (...) FROM STDIN` in text format: fields separated
/// by tabs, rows ended by newlines, `\N` for NULL, and backslash, tab, newline and carriage return escaped
/// in every text field (JSON text keeps its own backslashes, which are escaped too).
struct EventCopyRows {
    /// The columns, in the order each row holds them.
    static let columns = [
        "cell", "seq", "id", "kind", "resource_type", "resource_id", "owner", "occurred_at", "recorded_at",
        "footprint", "deltas", "reason", "attributes",
    ]
    private(set) var bytes: [UInt8] = []

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    mutating func add(_ recorded: RecordedEvent, cell: String) {
        let event = recorded.event
        text(cell)
        separate(String(recorded.seq))
        separate(event.id)
        separate(event.kind.rawValue)
        separate(event.resource.type)
        separate(event.resource.id)
        separate(event.owner)
        separate(event.occurredAt.rfc3339)
        separate(recorded.recordedAt.rfc3339)
        separate(event.footprint.map { json($0.entries.map { ($0.name, Int128($0.value)) }) })
        separate(event.deltas.map { json($0.entries.map { ($0.name, Int128($0.value)) }) })
        separate(event.reason)
        separate(event.attributes.isEmpty ? nil : json(strings: event.attributes.entries.map { ($0.key, $0.value) }))
        bytes.append(0x0A)
    }

    /// A tab, then `field` (NULL when nil).
    private mutating func separate(_ field: String?) {
        bytes.append(0x09)
        guard let field else {
            bytes.append(contentsOf: [0x5C, 0x4E])  // \N
            return
        }
        text(field)
    }

    private mutating func text(_ field: String) {
        for byte in field.utf8 {
            switch byte {
            case 0x5C: bytes.append(contentsOf: [0x5C, 0x5C])
            case 0x09: bytes.append(contentsOf: [0x5C, 0x74])
            case 0x0A: bytes.append(contentsOf: [0x5C, 0x6E])
            case 0x0D: bytes.append(contentsOf: [0x5C, 0x72])
            default: bytes.append(byte)
            }
        }
    }
}

/// Hourly usage rows as one array per column.
struct HourColumns {
    var owner: [String] = [], resourceType: [String] = [], resourceID: [String] = [], hour: [String] = []
    var runningMicroseconds: [Int64] = [], meters: [String] = [], adjustments: [String] = []

    var count: Int { hour.count }

    /// Adds one hour of `resource`; an hour without usage adds nothing.
    mutating func add(_ row: UsageRow, owner: String, resource: ResourceID) throws(ExportError) {
        guard !row.amounts.isEmpty else { return }
        guard let running = Int64(exactly: row.amounts.runningMicroseconds) else {
            throw .outOfRange("running_us of \(resource) at \(row.periodStart) exceeds bigint")
        }
        self.owner.append(owner)
        resourceType.append(resource.type)
        resourceID.append(resource.id)
        hour.append(row.periodStart.rfc3339)
        runningMicroseconds.append(running)
        meters.append(json(row.amounts.meterMicroseconds.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }))
        adjustments.append(json(row.amounts.adjustments.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }))
    }

    /// The rows in chunks of at most `size`.
    func chunks(of size: Int) -> [HourColumns] {
        stride(from: 0, to: count, by: size).map { start in
            let range = start..<min(start + size, count)
            return HourColumns(
                owner: Array(owner[range]), resourceType: Array(resourceType[range]),
                resourceID: Array(resourceID[range]), hour: Array(hour[range]),
                runningMicroseconds: Array(runningMicroseconds[range]), meters: Array(meters[range]),
                adjustments: Array(adjustments[range]))
        }
    }

    func bind(into binds: inout PostgresBindings) {
        for column in [owner, resourceType, resourceID, hour] { binds.append(column) }
        binds.append(runningMicroseconds)
        binds.append(meters)
        binds.append(adjustments)
    }
}

/// A JSON object of exact integers (jsonb keeps them as numeric: no rounding).
func json(_ pairs: [(String, Int128)]) -> String {
    var writer = JSONWriter()
    writer.object { o in
        for (name, value) in pairs { o.member(name, json: String(value)) }
    }
    return writer.text
}

/// A JSON object of strings.
func json(strings pairs: [(String, String)]) -> String {
    var writer = JSONWriter()
    writer.object { o in
        for (name, value) in pairs { o.member(name, value) }
    }
    return writer.text
}
