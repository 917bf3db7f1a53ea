import LMDBStorage
import LedgerCore

/// The on-disk format: named databases, key layouts and the record encoding. `docs/format.md` is the
/// prose of this file; change both together, and bump `currentVersion` for any incompatible change.
enum StorageFormat {
    /// The on-disk format this build writes and reads.
    static let currentVersion: UInt32 = 4

    /// Every named database, in the order `Ledger` opens them.
    enum Name {
        static let meta = "meta"
        static let events = "events"
        static let eventIDs = "event_ids"
        static let resources = "resources"
        static let timeline = "timeline"
        static let resourceState = "resource_state"
        static let running = "running"
        static let ownerTotals = "owner_totals"
        static let hourly = "hourly"
        static let compactionBase = "compaction_base"
        static let pending = "pending"
        static let ownerHourly = "owner_hourly"
        static let all = [meta, events, eventIDs, resources, timeline, resourceState, running, ownerTotals, hourly, compactionBase, pending,
                          ownerHourly]
        /// The databases derived from the log, which `rebuild` clears and refills.
        static let projections = [resourceState, running, ownerTotals, hourly, pending, ownerHourly]
    }

    /// Keys of the `meta` database.
    enum MetaKey {
        static let formatVersion = "format_version"
        static let nextSeq = "next_seq"
        static let nextResourceNumber = "next_resource_number"
        static let eventsByKind = "events_by_kind"
        static let appendOutcomes = "append_outcomes"
    }

    /// `resources` key: type, NUL, id (neither may contain NUL, so the key is unambiguous).
    static func resourceKey(_ resource: ResourceID) -> [UInt8] {
        var key = [UInt8]()
        key.reserveCapacity(resource.type.utf8.count + 1 + resource.id.utf8.count)
        key.append(contentsOf: resource.type.utf8)
        key.append(0)
        key.append(contentsOf: resource.id.utf8)
        return key
    }

    /// `timeline` key: resource number (8, big-endian), occurred_at (8, sign-flipped big-endian), seq (8,
    /// big-endian). Sorted, it is each resource's timeline in (occurred_at, seq) order.
    static func timelineKey(resource: UInt64, occurredAt: Timestamp, seq: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 24)
        writer.writeBigEndian(resource)
        writer.writeOrdered(occurredAt.microseconds)
        writer.writeBigEndian(seq)
        return writer.bytes
    }

    /// The 8-byte prefix of one resource's timeline keys.
    static func timelinePrefix(resource: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 8)
        writer.writeBigEndian(resource)
        return writer.bytes
    }

    /// A `resources` value: resource number (8, big-endian) then the owner's UTF-8.
    static func resourceValue(number: UInt64, owner: String) -> [UInt8] {
        var writer = ByteWriter(capacity: 8 + owner.utf8.count)
        writer.writeBigEndian(number)
        writer.write(contentsOf: owner.utf8)
        return writer.bytes
    }

    /// Reads a `resources` value.
    static func decodeResourceValue(_ bytes: UnsafeRawBufferPointer) throws(LedgerError) -> (number: UInt64, owner: String) {
        guard bytes.count >= 8, let owner = String(validating: UnsafeRawBufferPointer(rebasing: bytes[8...]).bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw .corrupt(reason: "a resources entry is malformed")
        }
        return (UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self)), owner)
    }

    /// Reads an 8-byte big-endian number stored as a value.
    static func decodeNumber(_ bytes: UnsafeRawBufferPointer, what: String) throws(LedgerError) -> UInt64 {
        guard let key = BigEndianKey(bytes: bytes) else { throw .corrupt(reason: "\(what) is not an 8-byte number") }
        return key.value
    }
}
