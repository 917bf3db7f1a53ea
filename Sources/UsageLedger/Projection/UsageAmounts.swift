import LedgerCore

/// Exact usage: running time and meter-time in microsecond units, adjustment sums in meter units.
///
/// `m_seconds` of a footprint meter is kept as `value × microseconds` (so `memory_mb` 512 for 1.5 s is
/// 768,000,000) and rendered as a decimal number of seconds only at the edge. Sums are 128-bit and
/// overflow-checked. A meter that never occurred is absent; one that occurred with 0 is present as 0.
public struct UsageAmounts: Sendable, Equatable {
    /// Microseconds the resource ran.
    public var runningMicroseconds: Int128 = 0
    /// For each footprint meter: meter value × microseconds.
    public var meterMicroseconds: [String: Int128] = [:]
    /// For each adjustment meter: the sum of its deltas.
    public var adjustments: [String: Int128] = [:]

    /// Nothing used.
    public init() {}

    /// Whether no meter occurred and nothing ran.
    public var isEmpty: Bool { runningMicroseconds == 0 && meterMicroseconds.isEmpty && adjustments.isEmpty }

    /// Adds a run of `duration` microseconds with `footprint`.
    mutating func addRunning(footprint: Meters, duration: Int64) throws(LedgerError) {
        guard duration > 0 else { return }
        runningMicroseconds = try checkedAdd(runningMicroseconds, Int128(duration), "running_seconds")
        for (name, value) in footprint {
            let (product, overflow) = Int128(value).multipliedReportingOverflow(by: Int128(duration))
            guard !overflow else {
                throw LedgerError.overflow(field: "\(name)_seconds", reason: "usage exceeds 128 bits")
            }
            meterMicroseconds[name] = try checkedAdd(meterMicroseconds[name] ?? 0, product, "\(name)_seconds")
        }
    }

    /// Adds adjustment deltas.
    mutating func addAdjustment(_ deltas: Meters) throws(LedgerError) {
        for (name, value) in deltas {
            adjustments[name] = try checkedAdd(adjustments[name] ?? 0, Int128(value), name)
        }
    }

    /// This amount `count` times (the usage of `count` equal hours), overflow-checked.
    func times(_ count: Int64) throws(LedgerError) -> UsageAmounts {
        func scaled(_ value: Int128, _ field: @autoclosure () -> String) throws(LedgerError) -> Int128 {
            let (product, overflow) = value.multipliedReportingOverflow(by: Int128(count))
            guard !overflow else { throw LedgerError.overflow(field: field(), reason: "the sum exceeds 128 bits") }
            return product
        }
        var result = UsageAmounts()
        result.runningMicroseconds = try scaled(runningMicroseconds, "running_seconds")
        for (name, value) in meterMicroseconds { result.meterMicroseconds[name] = try scaled(value, "\(name)_seconds") }
        for (name, value) in adjustments { result.adjustments[name] = try scaled(value, name) }
        return result
    }

    /// Adds another amount.
    public mutating func add(_ other: UsageAmounts) throws(LedgerError) {
        runningMicroseconds = try checkedAdd(runningMicroseconds, other.runningMicroseconds, "running_seconds")
        for (name, value) in other.meterMicroseconds {
            meterMicroseconds[name] = try checkedAdd(meterMicroseconds[name] ?? 0, value, "\(name)_seconds")
        }
        for (name, value) in other.adjustments {
            adjustments[name] = try checkedAdd(adjustments[name] ?? 0, value, name)
        }
    }
}

/// `a + b`, or `overflow` naming `field`; the name is built only on overflow (callers pass interpolated
/// names such as `"\(meter)_seconds"`, which would otherwise cost an allocation per addition).
func checkedAdd(_ a: Int128, _ b: Int128, _ field: @autoclosure () -> String) throws(LedgerError) -> Int128 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    guard !overflow else { throw LedgerError.overflow(field: field(), reason: "the sum exceeds 128 bits") }
    return sum
}

/// Exact decimal text of integer amounts, never through floating point.
public enum ExactDecimal {
    /// `micros` microsecond-units as seconds: `7_200_500_000` → `"7200.5"`, `-1` → `"-0.000001"`.
    public static func seconds(fromMicroseconds micros: Int128) -> String {
        let negative = micros < 0
        let magnitude = negative ? UInt128(bitPattern: 0 &- micros) : UInt128(micros)
        let whole = magnitude / 1_000_000
        var fraction = magnitude % 1_000_000
        var text = (negative ? "-" : "") + String(whole)
        if fraction != 0 {
            var digits = 6
            while fraction % 10 == 0 {
                fraction /= 10
                digits -= 1
            }
            let raw = String(fraction)
            text += "." + String(repeating: "0", count: digits - raw.count) + raw
        }
        return text
    }

    /// An integer as decimal text.
    public static func integer(_ value: Int128) -> String { String(value) }
}
