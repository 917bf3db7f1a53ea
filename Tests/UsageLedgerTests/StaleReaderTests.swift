import Foundation
import Testing
@testable import UsageLedger

@Suite("Reader slots of killed processes")
struct StaleReaderTests {
    /// Starts `usage-ledger verify` (one long read transaction) and kills it with SIGKILL inside it.
    func killVerifier(_ db: String) throws {
        let (process, out, err) = try startCLI(["verify", "--db", db])
        usleep(400_000)  // past process start and open, well inside the verification
        #expect(process.isRunning, "verify ended before it could be killed; the fixture is too small")
        kill(process.processIdentifier, SIGKILL)
        _ = finish(process, out, err)
    }

    @Test("a reader killed inside its read transaction leaves a slot that the next open clears")
    func staleSlotClearedOnOpen() throws {
        let dir = try TemporaryDirectory()
        let db = dir.child("ledger")
        try CompactionProcessTests.fleet(db, count: 250)  // verify then reads ~270k rows: over a second
        let ledger = try Ledger(path: db)
        // Control: the kill really leaves a stale slot behind.
        try killVerifier(db)
        #expect(ledger.environment.clearStaleReaders() >= 1)
        // The next process that opens the ledger clears it: nothing is left for us to clear afterwards.
        try killVerifier(db)
        let stats = try runCLI(["stats", "--db", db])
        #expect(stats.status == 0)
        #expect(ledger.environment.clearStaleReaders() == 0)
    }
}
