import Foundation
import Testing
@testable import UsageLedger

@Suite("Reader slots of killed processes")
struct StaleReaderTests {
    /// Starts a process that opens a read transaction and says so, then kills it with SIGKILL inside it.
    func killReader(_ db: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: workerPath)
        process.arguments = ["hold-read", db]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let said = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        #expect(said == "reading\n", "the reader said \(said)")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal)
    }

    @Test("a reader killed inside its read transaction leaves a slot that the next open clears")
    func staleSlotClearedOnOpen() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        try CompactionProcessTests.fleet(db, count: 20)
        let ledger = try Ledger(path: db)
        // Control: the kill really leaves a stale slot behind.
        try killReader(db)
        #expect(try ledger.environment.clearStaleReaders() >= 1)
        // The next process that opens the ledger clears it: nothing is left for us to clear afterwards.
        try killReader(db)
        let stats = try runCLI(["stats", "--db", db])
        #expect(stats.status == 0)
        #expect(try ledger.environment.clearStaleReaders() == 0)
    }
}
