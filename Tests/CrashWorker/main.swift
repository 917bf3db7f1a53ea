// A child process for the crash tests: it appends deterministic batches through the library and
// reports each one on stdout only after its transaction committed, so that the parent, which kills
// it with SIGKILL at random moments, knows exactly what was acknowledged.
//
//   ledger-crash-worker append DB FIRST COUNT SIZE   appends batches FIRST..<FIRST+COUNT, "ack B SEQ,SEQ,..." each
//   ledger-crash-worker retry  DB FIRST COUNT SIZE   appends them again, "retry B APPENDED DUPLICATES" each
//   ledger-crash-worker hold-read DB                 says "reading" inside a read transaction and waits to be killed
//   ledger-crash-worker hold-write DB                says "writing" holding LMDB's writer lock until stdin closes
#if canImport(Glibc)
import Glibc
#endif
import LMDBStorage
import LedgerCore
import UsageLedger

/// Batch `number`'s events: starts, scalings, stops and adjustments over a rotating set of resources.
func batch(_ number: Int, size: Int) -> [UsageEvent] {
    let base = Timestamp(microseconds: 1_795_000_000_000_000)
    return (0..<size).map { n in
        let serial = number * size + n
        let resource = ResourceID(type: serial % 3 == 0 ? "task" : "app", id: "r\(serial % 97)")
        let at = Timestamp(microseconds: base.microseconds + Int64(serial) * 1_000_000)
        let id = "b\(number)-e\(n)"
        switch serial % 7 {
        case 3:
            return UsageEvent(
                id: id, kind: .stopped, resource: resource, owner: "org-\(serial % 97 % 5)", occurredAt: at)
        case 5:
            return UsageEvent(
                id: id, kind: .adjustment, resource: resource, owner: "org-\(serial % 97 % 5)", occurredAt: at,
                deltas: ["bytes": Int64(serial % 11) - 5])
        default:
            return UsageEvent(
                id: id, kind: .started, resource: resource, owner: "org-\(serial % 97 % 5)", occurredAt: at,
                footprint: ["instances": Int64(1 + serial % 4), "memory_mb": 256])
        }
    }
}

/// Writes a line straight to the stdout descriptor, unbuffered, so that it is out before the next commit.
func say(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
        if written <= 0 { exit(3) }
        offset += written
    }
}

let arguments = CommandLine.arguments
if arguments.count == 3, arguments[1] == "hold-read" {
    // A reader that a kill leaves behind in the lock file, whatever the size of the ledger.
    do {
        var options = EnvironmentOptions()
        options.readOnly = true
        let environment = try Environment(path: arguments[2], options: options)
        try environment.read { (_) throws(StorageError) in
            say("reading")
            while true { pause() }
        }
    } catch {
        say("error \(error)")
        exit(1)
    }
}
if arguments.count == 3, arguments[1] == "hold-write" {
    // A writer from another process that holds the lock for as long as the test wants: appends here wait.
    do {
        let environment = try Environment(path: arguments[2])
        try environment.write(durability: .noSync) { (_) throws(StorageError) in
            say("writing")
            var byte: UInt8 = 0
            while read(STDIN_FILENO, &byte, 1) > 0 {}
        }
        exit(0)
    } catch {
        say("error \(error)")
        exit(1)
    }
}
guard arguments.count == 6, let first = Int(arguments[3]), let count = Int(arguments[4]), let size = Int(arguments[5])
else {
    say("usage: ledger-crash-worker append|retry DB FIRST COUNT SIZE")
    exit(2)
}
do {
    var options = LedgerOptions()
    options.clock = .fixed(Timestamp(microseconds: 1_795_521_600_000_000))
    let ledger = try Ledger(path: arguments[2], options: options)
    for number in first..<(first + count) {
        let result = try ledger.append(contentsOf: batch(number, size: size))
        guard result.rejections.isEmpty else {
            say("rejected \(number) \(result.rejections.map { "\($0.index): \($0.error)" })")
            exit(1)
        }
        switch arguments[1] {
        case "append": say("ack \(number) " + result.outcomes.map { "\($0.seq ?? 0)" }.joined(separator: ","))
        default: say("retry \(number) \(result.appendedCount) \(result.duplicateCount)")
        }
    }
} catch {
    say("error \(error)")
    exit(1)
}
