import Foundation
import Testing
import LMDBStorage
@testable import UsageLedger

@Suite("File-system faults: damaged files, read-only places")
struct FileFaultTests {
    /// A small rolled-up ledger of every kind, closed, in `dir/base`.
    static func makeLedger(_ dir: TemporaryDirectory) throws -> String {
        let path = dir.child("base")
        var options = LedgerOptions()
        options.clock = .fixed(testNow)
        let ledger = try Ledger(path: path, options: options)
        var events: [UsageEvent] = []
        for n in 0..<120 {
            let r = "app/r\(n)", owner = "org-\(n % 5)"
            events.append(
                event(
                    .started, "s\(n)", r, owner: owner, at: "2026-11-20T0\(n % 10):00:00Z",
                    footprint: ["instances": Int64(1 + n % 3)]))
            if n % 3 == 0 {
                events.append(
                    event(
                        .adjustment, "a\(n)", r, owner: owner, at: "2026-11-21T00:00:00Z", deltas: ["bytes": Int64(n)]))
            }
            if n % 2 == 0 { events.append(event(.stopped, "x\(n)", r, owner: owner, at: "2026-11-22T00:00:00Z")) }
        }
        _ = try ledger.append(contentsOf: events)
        _ = try ledger.rollUp(now: testNow)
        return path
    }

    /// Copies the ledger at `source` to `target` and XORs `bytes` of its data file with random bits.
    static func damagedCopy(
        of source: String, to target: String, flips: Int, using random: inout some RandomNumberGenerator
    ) throws {
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        for file in ["data.mdb", "lock.mdb"] {
            try FileManager.default.copyItem(atPath: "\(source)/\(file)", toPath: "\(target)/\(file)")
        }
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: "\(target)/data.mdb"))
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        for _ in 0..<flips {
            let offset = UInt64.random(in: 0..<size, using: &random)
            try handle.seek(toOffset: offset)
            let byte = try handle.read(upToCount: 1)?.first ?? 0
            try handle.seek(toOffset: offset)
            try handle.write(contentsOf: [byte ^ (1 << UInt8.random(in: 0..<8, using: &random))])
        }
    }

    @Test(
        "random flipped bytes in the data file: verify reports corrupt or a difference, or passes; never crashes"
    )
    func flippedBytes() throws {
        let trials = ProcessInfo.processInfo.environment["USAGE_LEDGER_FLIP_TRIALS"].flatMap(Int.init) ?? 40
        let dir = try TemporaryDirectory()
        let base = try Self.makeLedger(dir)
        var random = SystemRandomNumberGenerator()
        var outcomes: [Int32: Int] = [:]
        for trial in 0..<trials {
            let copy = dir.child("t\(trial)")
            try Self.damagedCopy(of: base, to: copy, flips: [1, 1, 4, 32][trial % 4], using: &random)
            let (process, out, err) = try startCLI(["verify", "--db", copy])
            // A hang is a failure too: give it 30 s (the ledger is a few hundred kilobytes).
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning, Date() < deadline { usleep(5000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            let result = finish(process, out, err)
            #expect(
                process.terminationReason == .exit,
                "trial \(trial): verify died of signal \(result.status); the damaged copy is \(copy)")
            #expect(
                [0, 1, 2].contains(result.status), "trial \(trial): exit status \(result.status): \(result.stderr)")
            if result.status == 2 {
                #expect(
                    result.stderr.contains("corrupt") || result.stderr.contains("cannot_open"),
                    "trial \(trial): \(result.stderr)")
            }
            outcomes[result.status, default: 0] += 1
            if result.status != 0 || process.terminationReason != .exit { continue }
            try FileManager.default.removeItem(atPath: copy)
        }
        print("flipped-byte trials: \(trials); exit statuses \(outcomes.sorted { $0.key < $1.key })")
    }

    @Test("a damaged page header or meta page is reported as corrupt, naming what is wrong")
    func damagedStructure() throws {
        let dir = try TemporaryDirectory()
        let base = try Self.makeLedger(dir)
        let pageSize = 4096
        // The meta pages' magic number: LMDB itself refuses the file at open.
        let meta = dir.child("meta")
        var random = SystemRandomNumberGenerator()
        try Self.damagedCopy(of: base, to: meta, flips: 0, using: &random)
        try Self.patch("\(meta)/data.mdb", at: [16, pageSize + 16]) { $0 ^ 0xFF }
        let atOpen = try runCLI(["verify", "--db", meta])
        #expect(atOpen.status == 2)
        #expect(atOpen.stderr.contains("corrupt"), "\(atOpen.stderr)")
        // Every page's own number, in the page header: the walk names the first page it reaches.
        let headers = dir.child("headers")
        try Self.damagedCopy(of: base, to: headers, flips: 0, using: &random)
        let pages =
            Int(try FileManager.default.attributesOfItem(atPath: "\(headers)/data.mdb")[.size] as? Int ?? 0) / pageSize
        try Self.patch("\(headers)/data.mdb", at: (2..<pages).map { $0 * pageSize }) { $0 ^ 0x01 }
        let walked = try runCLI(["verify", "--db", headers])
        #expect(walked.status == 2)
        #expect(walked.stderr.contains("corrupt") && walked.stderr.contains("says it is page"), "\(walked.stderr)")
        // The library's verify checks the structure too, and an intact ledger passes it.
        let report = try Ledger(path: base).verify()
        #expect(report.isConsistent)
        #expect(report.pagesChecked > 2)
    }

    /// LMDB maps and reads the file by the newer meta page's page size and last page, unchecked: a flipped
    /// bit there once made `mdb_env_open` die of SIGBUS (found by `flippedBytes`). Both meta pages, each
    /// field: refused at open as corrupt, never a crash.
    @Test(
        "a meta page claiming a page size or last page the file cannot hold is refused at open, not a crash",
        arguments: [(0, 42), (1, 42), (0, 143), (1, 143)])
    func damagedMetaFields(page: Int, byte: Int) throws {
        let dir = try TemporaryDirectory()
        let base = try Self.makeLedger(dir)
        let copy = dir.child("copy")
        var random = SystemRandomNumberGenerator()
        try Self.damagedCopy(of: base, to: copy, flips: 0, using: &random)
        // Byte 42 is bit 16 to 23 of the page size (4096 becomes 2 MiB); byte 143 the top of the last page.
        try Self.patch("\(copy)/data.mdb", at: [page * 4096 + byte]) { $0 ^ 0x20 }
        let result = try runCLI(["verify", "--db", copy])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains("is not an LMDB data file (meta page"), "\(result.stderr)")
    }

    /// Applies `change` to the bytes at `offsets` of `file`.
    static func patch(_ file: String, at offsets: [Int], _ change: (UInt8) -> UInt8) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: file))
        defer { try? handle.close() }
        for offset in offsets {
            try handle.seek(toOffset: UInt64(offset))
            let byte = try handle.read(upToCount: 1)?.first ?? 0
            try handle.seek(toOffset: UInt64(offset))
            try handle.write(contentsOf: [change(byte)])
        }
    }

    @Test("a read-only ledger directory gives a clear error at open that names what must be writable")
    func readOnlyDirectory() throws {
        let dir = try TemporaryDirectory()
        let base = try Self.makeLedger(dir)
        // Root ignores permissions, so as root the CLI runs as 'nobody' against a directory it may only read.
        let asRoot = getuid() == 0
        chmod(dir.path, 0o755)
        chmod(base, 0o555)
        for file in ["data.mdb", "lock.mdb"] { chmod("\(base)/\(file)", 0o444) }
        defer {
            chmod(base, 0o700)
            for file in ["data.mdb", "lock.mdb"] { chmod("\(base)/\(file)", 0o600) }
        }
        func run(_ arguments: [String]) throws -> ProcessResult {
            guard asRoot else { return try runCLI(arguments) }
            return try runProcess(
                "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", cliPath] + arguments)
        }
        for arguments in [["append", "--db", base], ["events", "--db", base]] {
            let result = try run(arguments)
            #expect(result.status == 2, "\(arguments[0])")
            #expect(
                result.stderr.contains("cannot_open: cannot open ledger at '\(base)': permission denied"),
                "\(result.stderr)")
            #expect(
                result.stderr.contains("/lock.mdb'") && result.stderr.contains("not writable by this user"),
                "\(result.stderr)")
        }
        // Nothing was changed: with permissions back, the ledger verifies and holds what it held.
        chmod(base, 0o700)
        for file in ["data.mdb", "lock.mdb"] { chmod("\(base)/\(file)", 0o600) }
        let ledger = try Ledger(path: base)
        #expect(try ledger.verify().isConsistent)
        #expect(try ledger.statistics().nextSeq > 100)
    }
}
