/// What an event says happened to a resource.
public enum EventKind: String, Sendable, Hashable, CaseIterable {
    /// The resource started; it runs with the event's footprint from `occurred_at`.
    case started
    /// A baseline: the resource was already running (recording began, or after a reseed).
    case wasRunning = "was_running"
    /// The resource stopped.
    case stopped
    /// A signed correction to one or more meters at `occurred_at`.
    case adjustment

    /// Whether the event begins a run (or changes the footprint of a running one).
    public var isBeginning: Bool { self == .started || self == .wasRunning }
}

/// A resource's identity: its type and its id within that type.
public struct ResourceID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The resource type, e.g. `app`, `task`, `service_instance`.
    public var type: String
    /// The resource's id within its type.
    public var id: String

    /// Names a resource.
    public init(type: String, id: String) {
        self.type = type
        self.id = id
    }

    /// Parses `TYPE/ID` (the id may itself contain `/`).
    public init?(parsing text: String) {
        guard let slash = text.firstIndex(of: "/") else { return nil }
        type = String(text[..<slash])
        id = String(text[text.index(after: slash)...])
        guard !type.isEmpty, !id.isEmpty else { return nil }
    }

    /// `TYPE/ID`.
    public var description: String { "\(type)/\(id)" }

    public static func < (lhs: ResourceID, rhs: ResourceID) -> Bool { (lhs.type, lhs.id) < (rhs.type, rhs.id) }
}

/// Named integer meters, kept sorted by name with each name at most once.
///
/// A meter that is absent is not the same as a meter that is 0: `Meters` keeps exactly the names given.
public struct Meters: Hashable, Sendable, Sequence, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    /// The meters, sorted by name.
    public private(set) var entries: [(name: String, value: Int64)]

    /// No meters.
    public init() { entries = [] }

    /// Meters from pairs; a later duplicate name replaces an earlier one.
    public init<S: Sequence>(_ pairs: S) where S.Element == (String, Int64) {
        var sorted: [(name: String, value: Int64)] = []
        for (name, value) in pairs { sorted.append((name, value)) }
        sorted.sort { $0.name < $1.name }
        var unique: [(name: String, value: Int64)] = []
        unique.reserveCapacity(sorted.count)
        for entry in sorted {
            if let last = unique.last, last.name == entry.name {
                unique[unique.count - 1] = entry
            } else {
                unique.append(entry)
            }
        }
        entries = unique
    }

    public init(dictionaryLiteral elements: (String, Int64)...) { self.init(elements) }

    /// The number of meters.
    public var count: Int { entries.count }
    /// Whether there are no meters.
    public var isEmpty: Bool { entries.isEmpty }

    /// The value of meter `name`, or nil when absent. Setting a value adds or replaces the meter (kept in
    /// name order); setting nil removes it. A meter set to 0 is present as 0.
    public subscript(name: String) -> Int64? {
        get {
            let index = insertionIndex(of: name)
            return index < entries.count && entries[index].name == name ? entries[index].value : nil
        }
        set {
            let index = insertionIndex(of: name)
            let present = index < entries.count && entries[index].name == name
            switch (newValue, present) {
            case (let value?, true): entries[index].value = value
            case (let value?, false): entries.insert((name, value), at: index)
            case (nil, true): entries.remove(at: index)
            case (nil, false): break
            }
        }
    }

    private func insertionIndex(of name: String) -> Int {
        sortedInsertionIndex(of: name, count: entries.count) { entries[$0].name }
    }

    /// The meters as a dictionary literal in name order, such as `["instances": 2, "memory_mb": 512]`.
    public var description: String {
        entries.isEmpty ? "[:]" : "[" + entries.map { "\(quoted($0.name)): \($0.value)" }.joined(separator: ", ") + "]"
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: Int64)]> { entries.makeIterator() }

    public static func == (lhs: Meters, rhs: Meters) -> Bool {
        lhs.entries.elementsEqual(rhs.entries) { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in entries {
            hasher.combine(entry.name)
            hasher.combine(entry.value)
        }
    }
}

/// String attributes of an event, kept sorted by key with each key at most once.
public struct Attributes: Hashable, Sendable, Sequence, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    /// The pairs, sorted by key.
    public private(set) var entries: [(key: String, value: String)]

    /// No attributes.
    public init() { entries = [] }

    /// Attributes from pairs; a later duplicate key replaces an earlier one.
    public init<S: Sequence>(_ pairs: S) where S.Element == (String, String) {
        var byKey: [String: String] = [:]
        for (key, value) in pairs { byKey[key] = value }
        entries = byKey.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) }
    }

    public init(dictionaryLiteral elements: (String, String)...) { self.init(elements) }

    /// The number of pairs.
    public var count: Int { entries.count }
    /// Whether there are none.
    public var isEmpty: Bool { entries.isEmpty }
    /// The value for `key`, or nil. Setting a value adds or replaces the pair (kept in key order); setting
    /// nil removes it.
    public subscript(key: String) -> String? {
        get {
            let index = insertionIndex(of: key)
            return index < entries.count && entries[index].key == key ? entries[index].value : nil
        }
        set {
            let index = insertionIndex(of: key)
            let present = index < entries.count && entries[index].key == key
            switch (newValue, present) {
            case (let value?, true): entries[index].value = value
            case (let value?, false): entries.insert((key, value), at: index)
            case (nil, true): entries.remove(at: index)
            case (nil, false): break
            }
        }
    }

    private func insertionIndex(of key: String) -> Int {
        sortedInsertionIndex(of: key, count: entries.count) { entries[$0].key }
    }

    /// The pairs as a dictionary literal in key order, such as `["zone": "eu-1"]`.
    public var description: String {
        entries.isEmpty
            ? "[:]" : "[" + entries.map { "\(quoted($0.key)): \(quoted($0.value))" }.joined(separator: ", ") + "]"
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: String)]> { entries.makeIterator() }

    public static func == (lhs: Attributes, rhs: Attributes) -> Bool {
        lhs.entries.elementsEqual(rhs.entries) { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in entries {
            hasher.combine(entry.key)
            hasher.combine(entry.value)
        }
    }
}

/// A usage event as an orchestrator submits it (wire format v1, without `seq` and `recorded_at`).
public struct UsageEvent: Hashable, Sendable {
    /// The idempotency key: 1 to 128 bytes of UTF-8 without control characters.
    public var id: String
    /// What happened.
    public var kind: EventKind
    /// The resource it happened to.
    public var resource: ResourceID
    /// The resource's owner (fixed by the resource's first event).
    public var owner: String
    /// When it happened.
    public var occurredAt: Timestamp
    /// The footprint from now on: required on `started` and `was_running` (may be empty), nil otherwise.
    public var footprint: Meters?
    /// The corrections: required and non-empty on `adjustment`, nil otherwise.
    public var deltas: Meters?
    /// Why a correction or repaired ending was written (`adjustment` and `stopped` only).
    public var reason: String?
    /// Free-form string attributes (at most 32).
    public var attributes: Attributes

    /// Creates an event; `UsageLedger` validates it on append.
    public init(
        id: String, kind: EventKind, resource: ResourceID, owner: String, occurredAt: Timestamp,
        footprint: Meters? = nil, deltas: Meters? = nil, reason: String? = nil, attributes: Attributes = [:]
    ) {
        self.id = id
        self.kind = kind
        self.resource = resource
        self.owner = owner
        self.occurredAt = occurredAt
        self.footprint = footprint
        self.deltas = deltas
        self.reason = reason
        self.attributes = attributes
    }
}

/// An event as the ledger stores and returns it.
public struct RecordedEvent: Hashable, Sendable {
    /// The position in the log: strictly increasing, the feed cursor.
    public var seq: UInt64
    /// When the ledger accepted it (the ledger's clock).
    public var recordedAt: Timestamp
    /// The event as submitted.
    public var event: UsageEvent

    /// Pairs an event with its place in the log.
    public init(seq: UInt64, recordedAt: Timestamp, event: UsageEvent) {
        self.seq = seq
        self.recordedAt = recordedAt
        self.event = event
    }
}

/// The first of `count` sorted keys (`key(i)`) that is not below `target`: a binary search.
private func sortedInsertionIndex(of target: String, count: Int, key: (Int) -> String) -> Int {
    var low = 0, high = count
    while low < high {
        let middle = (low + high) / 2
        if key(middle) < target { low = middle + 1 } else { high = middle }
    }
    return low
}

/// `text` in double quotes, with quotes, backslashes and control characters escaped as Swift writes them.
private func quoted(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\t": result += "\\t"
        case "\r": result += "\\r"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F:
            result += "\\u{\(String(scalar.value, radix: 16))}"
        default: result.unicodeScalars.append(scalar)
        }
    }
    return result + "\""
}
