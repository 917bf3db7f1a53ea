import LMDBStorage
import LedgerCore

/// What a reconcile did.
public enum ReconcileOutcome: Sendable, Equatable {
    /// An adjustment was appended with these deltas.
    case appended(seq: UInt64, deltas: Meters)
    /// The key was used before: nothing more was appended.
    case alreadyRecorded(seq: UInt64)
    /// Every named meter already equals the reported total.
    case nothingToDo
}

extension Ledger {
    /// Appends one adjustment whose deltas make the ledger's sum of each named meter for the resource
    /// equal `reportedTotals` (as a metering agent's cumulative counters report them). Meters already
    /// equal get no delta; when all are equal nothing is appended. `key` makes it idempotent: a retry with
    /// the same key appends nothing more.
    public func reconcile(
        resource: ResourceID, owner: String, reportedTotals: Meters, at: Timestamp, key: String,
        reason: String = "reconcile"
    ) throws(LedgerError) -> ReconcileOutcome {
        guard !reportedTotals.isEmpty else { throw .invalidField(field: "totals", reason: "name at least one meter") }
        for (name, _) in reportedTotals { try EventRules.checkMeterName(name, field: "totals") }
        let id = "reconcile/" + key
        let now = options.clock.now()
        return try write { txn -> ReconcileOutcome in
            if let existing = try txn.get(self.schema.eventIDs, id) { return .alreadyRecorded(seq: existing) }
            var current: [String: Int128] = [:]
            if let number = try self.resourceNumber(resource, in: txn),
                let state = try txn.get(self.schema.resourceState, number)
            {
                guard state.owner == owner else {
                    throw LedgerError.ownerMismatch(resource: resource, owner: state.owner, submitted: owner)
                }
                current = state.adjustmentTotals
            }
            var deltas: [(String, Int64)] = []
            for (name, total) in reportedTotals {
                let difference = Int128(total) - (current[name] ?? 0)
                guard difference != 0 else { continue }
                guard let delta = Int64(exactly: difference) else {
                    throw LedgerError.overflow(
                        field: "totals.\(name)", reason: "the correction does not fit a signed 64-bit integer")
                }
                deltas.append((name, delta))
            }
            guard !deltas.isEmpty else { return .nothingToDo }
            let event = UsageEvent(
                id: id, kind: .adjustment, resource: resource, owner: owner, occurredAt: at,
                deltas: Meters(deltas), reason: reason)
            let result = try self.appendPrepared([self.prepare(event, now: now)], recordedAt: now, in: txn)
            switch result.outcomes.first {
            case .appended(let seq)?: return .appended(seq: seq, deltas: Meters(deltas))
            case .duplicate(let seq)?: return .alreadyRecorded(seq: seq)
            case .rejected(let error)?: throw error
            case nil: throw LedgerError.storage(code: nil, reason: "reconcile appended nothing")
            }
        }
    }
}
