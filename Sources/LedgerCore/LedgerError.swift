/// Every error the ledger reports. Rejections of a single event carry a stable `code` (the same string
/// on the wire, in the CLI and in the library); the others are failures of the ledger or its files.
public enum LedgerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The line is not one well-formed JSON object (`invalid_json`).
    case invalidJSON(reason: String)
    /// A field is missing, of the wrong type, or outside its rules (`invalid_field`).
    case invalidField(field: String, reason: String)
    /// The id was already used for an event with another payload (`id_conflict`).
    case idConflict(id: String, existingSeq: UInt64)
    /// The resource belongs to another owner (`owner_mismatch`).
    case ownerMismatch(resource: ResourceID, owner: String, submitted: String)
    /// The event occurred too far after the ledger's clock (`in_future`).
    case inFuture(occurredAt: Timestamp, now: Timestamp, toleranceMicroseconds: Int64)
    /// A number does not fit the ledger's integer range (`overflow`).
    case overflow(field: String, reason: String)
    /// The event is older than the compaction horizon and can no longer be folded (`too_late`).
    case tooLate(occurredAt: Timestamp, horizon: Timestamp)

    /// A query reaches before what retention kept: before the snapshots' retained range, or into a
    /// partial hour before the compaction horizon (`outside_retention`).
    case outsideRetention(reason: String)
    /// Another compaction holds the ledger's compaction lock (`compaction_running`).
    case compactionRunning(holder: String)
    /// Compaction refused to prune because something it depends on is missing (`compaction_refused`).
    case compactionRefused(reason: String)
    /// The ledger reached its configured maximum size; the failed transaction wrote nothing (`ledger_full`).
    case ledgerFull(maximumBytes: Int)
    /// The ledger was written by a newer on-disk format than this build reads (`format_too_new`).
    case formatTooNew(found: UInt32, supported: UInt32)
    /// The path cannot be opened as a ledger (`cannot_open`).
    case cannotOpen(path: String, reason: String)
    /// Stored data fails its checks (`corrupt`).
    case corrupt(reason: String)
    /// Another storage failure (`storage`): `code` is the LMDB or `errno` code behind it, when there is one.
    case storage(code: Int32?, reason: String)
    /// The ledger was opened read-only, and this call writes (`read_only`).
    case readOnly(path: String)
    /// A write was begun on a thread that already has a transaction of this ledger open, for example from a
    /// callback; LMDB would deadlock on it (`nested_transaction`). A programming error: do not retry.
    case nestedTransaction
    /// The options of this open conflict with those of another open of the same ledger in this process that
    /// only the first open can set (`option_conflict`).
    case optionConflict(option: String, reason: String)
    /// A caller passed an argument that cannot be used (`invalid_argument`).
    case invalidArgument(reason: String)
    /// A backup's target exists and is not an empty directory; it was left untouched (`target_exists`).
    case targetExists(path: String, reason: String)
    /// The ledger handle was closed with `close()`; open a new one to go on (`closed`).
    case closed(path: String)

    /// The stable machine-readable code.
    public var code: String {
        switch self {
        case .invalidJSON: return "invalid_json"
        case .invalidField: return "invalid_field"
        case .idConflict: return "id_conflict"
        case .ownerMismatch: return "owner_mismatch"
        case .inFuture: return "in_future"
        case .overflow: return "overflow"
        case .tooLate: return "too_late"
        case .outsideRetention: return "outside_retention"
        case .compactionRunning: return "compaction_running"
        case .compactionRefused: return "compaction_refused"
        case .ledgerFull: return "ledger_full"
        case .formatTooNew: return "format_too_new"
        case .cannotOpen: return "cannot_open"
        case .corrupt: return "corrupt"
        case .storage: return "storage"
        case .readOnly: return "read_only"
        case .nestedTransaction: return "nested_transaction"
        case .optionConflict: return "option_conflict"
        case .invalidArgument: return "invalid_argument"
        case .targetExists: return "target_exists"
        case .closed: return "closed"
        }
    }

    /// The field the error is about, when it is about one.
    public var field: String? {
        switch self {
        case .invalidField(let field, _), .overflow(let field, _): return field
        case .idConflict: return "id"
        case .ownerMismatch: return "resource.owner"
        case .inFuture, .tooLate: return "occurred_at"
        default: return nil
        }
    }

    /// A message for a person, naming the field and the reason.
    public var message: String {
        switch self {
        case .invalidJSON(let reason): return "not a JSON object: \(reason)"
        case .invalidField(let field, let reason): return "\(field): \(reason)"
        case .idConflict(let id, let seq):
            return "id: '\(id)' was already recorded as seq \(seq) with a different payload"
        case .ownerMismatch(let resource, let owner, let submitted):
            return "resource.owner: \(resource) belongs to '\(owner)', not '\(submitted)'"
        case .inFuture(let at, let now, let tolerance):
            return "occurred_at: \(at) is more than \(tolerance / 1_000_000) s after the ledger's clock (\(now))"
        case .overflow(let field, let reason): return "\(field): \(reason)"
        case .tooLate(let at, let horizon):
            return
                "occurred_at: \(at) is before the compaction horizon \(horizon); the log before it can no longer be "
                + "refolded"
        case .outsideRetention(let reason): return reason
        case .compactionRunning(let holder): return "another compaction is running (\(holder)); this one did nothing"
        case .compactionRefused(let reason): return reason
        case .ledgerFull(let max):
            return "the ledger reached its maximum size of \(max) bytes; nothing of the failed batch was written"
        case .formatTooNew(let found, let supported):
            return
                "the ledger has on-disk format \(found), newer than format \(supported) that this build reads; "
                + "upgrade usage-ledger"
        case .cannotOpen(let path, let reason): return "cannot open ledger at '\(path)': \(reason)"
        case .corrupt(let reason): return "the ledger is corrupt: \(reason)"
        case .storage(_, let reason): return "storage failure: \(reason)"
        case .readOnly(let path):
            return "the ledger at '\(path)' was opened read-only; open it for writing to change it"
        case .nestedTransaction:
            return "a write was begun on a thread that already has a transaction of this ledger open "
                + "(a callback of another ledger call?); it would deadlock"
        case .optionConflict(let option, let reason): return "\(option): \(reason)"
        case .invalidArgument(let reason): return reason
        case .targetExists(let path, let reason):
            return "the backup target '\(path)' \(reason); it was left untouched"
        case .closed(let path): return "the ledger handle for '\(path)' was closed; open a new one"
        }
    }

    public var description: String { "\(code): \(message)" }

    /// Whether this error rejects one event (and so leaves the rest of its batch to commit).
    public var isRejection: Bool {
        switch self {
        case .invalidJSON, .invalidField, .idConflict, .ownerMismatch, .inFuture, .overflow, .tooLate: return true
        default: return false
        }
    }
}
