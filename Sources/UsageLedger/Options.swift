import Logging
import LMDBStorage
@_exported import LedgerCore
#if canImport(Glibc)
import Glibc
#endif

/// What a commit waits for; see `LMDBStorage.Durability` and docs/operations.md.
public typealias Durability = LMDBStorage.Durability

/// The ledger's source of "now": the system clock, or a fixed or simulated one in tests and demos.
public struct LedgerClock: Sendable {
    private let read: @Sendable () -> Timestamp

    /// A clock that calls `read` for the current instant.
    public init(_ read: @escaping @Sendable () -> Timestamp) { self.read = read }

    /// The current instant.
    public func now() -> Timestamp { read() }

    /// The system's real-time clock.
    public static let system = LedgerClock {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(microseconds: Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1000)
    }

    /// A clock that always answers `instant`.
    public static func fixed(_ instant: Timestamp) -> LedgerClock { LedgerClock { instant } }
}

/// How to open a ledger.
public struct LedgerOptions: Sendable {
    /// What a commit waits for (default `full`: fsync on every commit).
    public var durability: Durability = .full
    /// The map size to start with; it doubles on demand.
    public var initialMapSize: Int = 64 << 20
    /// The largest the ledger's file may grow; beyond it appends fail with `ledger_full`.
    public var maximumMapSize: Int = 1 << 40
    /// Reader slots, shared by every process that opens the ledger.
    public var maximumReaders: UInt32 = 126
    /// Opens without writing; the ledger must exist.
    public var readOnly = false
    /// Creates the ledger when the path holds none.
    public var createIfMissing = true
    /// Checks the data file's page structure before opening its databases (as `verify` does), so that a
    /// damaged file is reported as `corrupt` instead of being read. Costs one read of the whole file.
    public var checksStructureAtOpen = false
    /// The ledger's clock: `recorded_at` and the `in_future` check read it.
    public var clock: LedgerClock = .system
    /// How far after the clock an event may have occurred before it is rejected as `in_future`.
    public var futureToleranceMicroseconds: Int64 = 5 * 60 * 1_000_000

    /// Where the ledger logs rollups, compactions, reseeds, upgrades and failures. Silent by default;
    /// pass the embedding application's logger to see them.
    public var logger = Logger(label: "usage-ledger", factory: { _ in SwiftLogNoOpLogHandler() })
    /// Dimensions added to every metric this ledger reports (say `[("ledger", "eu-west-1")]` when a process
    /// opens several); metrics go to whatever backend the application bootstrapped with swift-metrics.
    public var metricsDimensions: [(String, String)] = []

    /// The defaults: full durability, a 64 MiB map growing to 1 TiB, the system clock, no logging.
    public init() {}
}
