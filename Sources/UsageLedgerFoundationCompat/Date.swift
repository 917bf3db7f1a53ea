// Conversions between the ledger's `Timestamp` and Foundation's `Date`, in a module of their own so that
// the ledger itself does not link Foundation (as NIOFoundationCompat does for swift-nio).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LedgerCore

/// Microseconds from the Unix epoch to Foundation's reference date, 2001-01-01T00:00:00Z.
private let referenceDateMicroseconds: Int64 = 978_307_200_000_000

extension Timestamp {
    /// The instant of `date`, rounded to the nearest microsecond (a `Date` is a `Double` of seconds, finer
    /// than a microsecond near 2001 and coarser far from it). Dates beyond the 64-bit microsecond range
    /// (about ±292,000 years) are clamped to it; the ledger itself accepts the years 0000 to 9999.
    public init(_ date: Date) {
        // Relative to the reference date: the Double that `Date` stores, converted once.
        let offset = (date.timeIntervalSinceReferenceDate * 1_000_000).rounded()
        let limit = Double(Int64.max) - Double(referenceDateMicroseconds)
        guard offset.isFinite, offset < limit, offset > -limit else {
            self.init(microseconds: offset.isNaN || offset < 0 ? .min : .max)
            return
        }
        self.init(microseconds: referenceDateMicroseconds + Int64(offset))
    }
}

extension Date {
    /// The instant of `timestamp`. Within 2^31 seconds of 2001 (the years 1933 to 2068) a `Date` holds
    /// every microsecond, so a round trip through `Timestamp(_:)` gives the same timestamp back; further
    /// away its `Double` is coarser than a microsecond (about 1 µs by 1865 and 2137).
    public init(_ timestamp: Timestamp) {
        let offset = timestamp.microseconds.subtractingReportingOverflow(referenceDateMicroseconds)
        let seconds =
            offset.overflow
            ? Double(timestamp.microseconds) / 1_000_000 - Double(referenceDateMicroseconds) / 1_000_000
            : Double(offset.partialValue) / 1_000_000
        self.init(timeIntervalSinceReferenceDate: seconds)
    }
}
