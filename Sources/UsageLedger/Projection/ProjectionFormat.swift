import LMDBStorage
import LedgerCore

/// Keys and value encodings of the projection databases (see docs/format.md).
enum ProjectionFormat {
    /// `running` and `owner_totals` keys: owner, 0x00, type (, 0x00, id).
    static func ownerKey(_ owner: String, type: String? = nil, id: String? = nil) -> [UInt8] {
        var key = Array(owner.utf8)
        key.append(0)
        if let type {
            key.append(contentsOf: type.utf8)
            if let id {
                key.append(0)
                key.append(contentsOf: id.utf8)
            }
        }
        return key
    }

    /// `hourly` key: hour start (8, ordered), owner, 0x00, type, 0x00, id.
    static func hourlyKey(hour: Int64, owner: String, resource: ResourceID) -> [UInt8] {
        var writer = ByteWriter(capacity: 16 + owner.utf8.count + resource.type.utf8.count + resource.id.utf8.count)
        writer.writeOrdered(hour)
        writer.write(contentsOf: ownerKey(owner, type: resource.type, id: resource.id))
        return writer.bytes
    }

    /// The prefix of one owner's rows in one hour.
    static func hourlyPrefix(hour: Int64, owner: String) -> [UInt8] {
        var writer = ByteWriter(capacity: 9 + owner.utf8.count)
        writer.writeOrdered(hour)
        writer.write(contentsOf: ownerKey(owner))
        return writer.bytes
    }

    /// The hour (start, µs) an `hourly` key begins with.
    static func hour(ofHourlyKey key: UnsafeRawBufferPointer) -> Int64? {
        var reader = ByteReader(key)
        return try? reader.readOrderedInt64()
    }

    /// Splits an `hourly` key into hour, owner and resource.
    static func decodeHourlyKey(_ key: UnsafeRawBufferPointer) throws(LedgerError) -> (
        hour: Int64, owner: String, resource: ResourceID
    ) {
        guard key.count > 8, let hour = hour(ofHourlyKey: key) else {
            throw .corrupt(reason: "an hourly key is too short")
        }
        let parts = Array(key[8...]).split(separator: 0, omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .corrupt(reason: "an hourly key does not hold owner, type and id") }
        return (
            hour, String(decoding: parts[0], as: UTF8.self),
            ResourceID(type: String(decoding: parts[1], as: UTF8.self), id: String(decoding: parts[2], as: UTF8.self))
        )
    }

    // MARK: - Resource state

    static let stateVersion: UInt8 = 2

    static func encode(_ state: ResourceState) -> [UInt8] {
        var writer = ByteWriter(capacity: 128)
        writer.write(stateVersion)
        writer.writeString(state.resource.type)
        writer.writeString(state.resource.id)
        writer.writeString(state.owner)
        writer.write(state.running ? 1 : 0)
        writer.writeOrdered(state.runStartedAt?.microseconds ?? 0)
        writer.writeOrdered(state.footprintSince?.microseconds ?? 0)
        writer.writeOrdered(state.lastOccurredAt.microseconds)
        writer.writeOrdered(state.accruedUntil.microseconds)
        writer.writeVarint(state.unmatchedStops)
        RecordFields.writeMeters(state.footprint, into: &writer)
        writer.writeVarint(UInt64(state.attributes.count))
        for (key, value) in state.attributes {
            writer.writeString(key)
            writer.writeString(value)
        }
        RecordFields.writeAmounts(state.adjustmentTotals, into: &writer)
        writer.write(state.checkpointRunning ? 1 : 0)
        RecordFields.writeMeters(state.checkpointFootprint, into: &writer)
        return writer.bytes
    }

    /// A stored state's checkpoint (`accruedUntil`), read without decoding the rest.
    static func checkpoint(ofState bytes: UnsafeRawBufferPointer) throws(LedgerError) -> Timestamp {
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            guard try reader.readByte() == stateVersion else {
                throw ByteReader.Malformed(offset: 0, expected: "state version \(stateVersion)")
            }
            for _ in 0..<3 { try reader.skip(Int(clamping: try reader.readVarint())) }
            try reader.skip(1 + 8 + 8 + 8)
            return Timestamp(microseconds: try reader.readOrderedInt64())
        } catch {
            throw .corrupt(
                reason: "a resource_state entry is malformed: expected \(error.expected) at byte \(error.offset)")
        }
    }

    static func decodeState(_ bytes: UnsafeRawBufferPointer) throws(LedgerError) -> ResourceState {
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            guard try reader.readByte() == stateVersion else {
                throw ByteReader.Malformed(offset: 0, expected: "state version \(stateVersion)")
            }
            let type = try reader.readString(), id = try reader.readString(), owner = try reader.readString()
            var state = ResourceState(resource: ResourceID(type: type, id: id), owner: owner)
            state.running = try reader.readByte() == 1
            let runStartedAt = try reader.readOrderedInt64(), footprintSince = try reader.readOrderedInt64()
            if state.running {
                state.runStartedAt = Timestamp(microseconds: runStartedAt)
                state.footprintSince = Timestamp(microseconds: footprintSince)
            }
            state.lastOccurredAt = Timestamp(microseconds: try reader.readOrderedInt64())
            state.accruedUntil = Timestamp(microseconds: try reader.readOrderedInt64())
            state.unmatchedStops = try reader.readVarint()
            state.footprint = try RecordFields.readMeters(&reader)
            let attributeCount = try reader.readVarint()
            guard attributeCount <= UInt64(reader.remaining) else {
                throw ByteReader.Malformed(offset: reader.offset, expected: "attributes")
            }
            var attributes: [(String, String)] = []
            for _ in 0..<attributeCount { attributes.append((try reader.readString(), try reader.readString())) }
            state.attributes = Attributes(attributes)
            state.adjustmentTotals = try RecordFields.readAmounts(&reader)
            state.checkpointRunning = try reader.readByte() == 1
            state.checkpointFootprint = try RecordFields.readMeters(&reader)
            return state
        } catch {
            throw .corrupt(
                reason: "a resource_state entry is malformed: expected \(error.expected) at byte \(error.offset)")
        }
    }

    // MARK: - Compaction base

    static let baseVersion: UInt8 = 1

    static func encode(_ base: CompactionBase) -> [UInt8] {
        var writer = ByteWriter(capacity: 32)
        writer.write(baseVersion)
        writer.writeOrdered(base.lastOccurredAt.microseconds)
        writer.writeVarint(base.unmatchedStops)
        RecordFields.writeAmounts(base.adjustmentTotals, into: &writer)
        return writer.bytes
    }

    static func decodeBase(_ bytes: UnsafeRawBufferPointer) throws(LedgerError) -> CompactionBase {
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            guard try reader.readByte() == baseVersion else {
                throw ByteReader.Malformed(offset: 0, expected: "base version \(baseVersion)")
            }
            var base = CompactionBase()
            base.lastOccurredAt = Timestamp(microseconds: try reader.readOrderedInt64())
            base.unmatchedStops = try reader.readVarint()
            base.adjustmentTotals = try RecordFields.readAmounts(&reader)
            return base
        } catch {
            throw .corrupt(
                reason: "a compaction_base entry is malformed: expected \(error.expected) at byte \(error.offset)")
        }
    }

    // MARK: - Hourly rows

    /// Row version 2 (format 5): sums in their smallest exact encoding. Version 1 (format 4) held 16-byte
    /// sums; it is read only while an upgrade rewrites it.
    static let rowVersion: UInt8 = 2

    static func encode(_ amounts: UsageAmounts) -> [UInt8] {
        var writer = ByteWriter(capacity: 32)
        writer.write(rowVersion)
        RecordFields.writeCompact128(amounts.runningMicroseconds, into: &writer)
        RecordFields.writeAmounts(amounts.meterMicroseconds, into: &writer, as: .compact)
        RecordFields.writeAmounts(amounts.adjustments, into: &writer, as: .compact)
        return writer.bytes
    }

    static func decodeRow(_ bytes: UnsafeRawBufferPointer) throws(LedgerError) -> UsageAmounts {
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            let version = try reader.readByte()
            guard version == rowVersion || version == 1 else {
                throw ByteReader.Malformed(offset: 0, expected: "row version \(rowVersion)")
            }
            let sums: RecordFields.SumEncoding = version == 1 ? .fixed16 : .compact
            var amounts = UsageAmounts()
            amounts.runningMicroseconds = try sums.read(&reader)
            amounts.meterMicroseconds = try RecordFields.readAmounts(&reader, as: sums)
            amounts.adjustments = try RecordFields.readAmounts(&reader, as: sums)
            guard reader.remaining == 0 else {
                throw ByteReader.Malformed(offset: reader.offset, expected: "the end of the row")
            }
            return amounts
        } catch {
            throw .corrupt(reason: "an hourly row is malformed: expected \(error.expected) at byte \(error.offset)")
        }
    }

    // MARK: - Owner totals

    /// Running resources of one (owner, type) and, per footprint meter, how many of them have it and its sum.
    struct OwnerTotals: Equatable {
        var running: UInt64 = 0
        var meters: [String: (count: UInt64, sum: Int128)] = [:]

        static func == (a: OwnerTotals, b: OwnerTotals) -> Bool {
            a.running == b.running && a.meters.count == b.meters.count
                && a.meters.allSatisfy { name, entry in
                    b.meters[name].map { $0.count == entry.count && $0.sum == entry.sum } ?? false
                }
        }

        mutating func add(_ footprint: Meters, sign: Int) throws(LedgerError) {
            running = sign > 0 ? running + 1 : running &- 1
            for (name, value) in footprint {
                var entry = meters[name] ?? (0, 0)
                entry.count = sign > 0 ? entry.count + 1 : entry.count &- 1
                entry.sum = try checkedAdd(entry.sum, sign > 0 ? Int128(value) : -Int128(value), name)
                meters[name] = entry.count == 0 ? nil : entry
            }
        }
    }

    static func encode(_ totals: OwnerTotals) -> [UInt8] {
        var writer = ByteWriter(capacity: 32)
        writer.writeVarint(totals.running)
        writer.writeVarint(UInt64(totals.meters.count))
        for name in totals.meters.keys.sorted() {
            guard let entry = totals.meters[name] else { continue }
            writer.writeString(name)
            writer.writeVarint(entry.count)
            RecordFields.writeSigned128(entry.sum, into: &writer)
        }
        return writer.bytes
    }

    static func decodeTotals(_ bytes: UnsafeRawBufferPointer) throws(LedgerError) -> OwnerTotals {
        var reader = ByteReader(bytes)
        do throws(ByteReader.Malformed) {
            var totals = OwnerTotals()
            totals.running = try reader.readVarint()
            let count = try reader.readVarint()
            guard count <= UInt64(reader.remaining) else {
                throw ByteReader.Malformed(offset: reader.offset, expected: "meters")
            }
            for _ in 0..<count {
                let name = try reader.readString()
                totals.meters[name] = (try reader.readVarint(), try RecordFields.readSigned128(&reader))
            }
            return totals
        } catch {
            throw .corrupt(
                reason: "an owner_totals entry is malformed: expected \(error.expected) at byte \(error.offset)")
        }
    }
}
