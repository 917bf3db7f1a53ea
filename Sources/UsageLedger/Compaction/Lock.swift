import LedgerCore
#if canImport(Glibc)
import Glibc
#endif

/// The cross-process compaction lock: an exclusive `flock` on `compaction.lock` in the ledger directory.
/// The kernel releases it when the holder exits or is killed, so a crashed compaction never blocks the
/// next one. The file names the holder (pid and start time) for the message a second compaction prints.
final class CompactionLock {
    private var fd: Int32

    init(ledgerPath: String, clock: LedgerClock) throws(LedgerError) {
        let path = ledgerPath + "/compaction.lock"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw .cannotOpen(
                path: path, reason: "cannot open the compaction lock: \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 256)
            let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 256, 0) }
            let holder =
                count > 0
                ? String(decoding: buffer[0..<count], as: UTF8.self) : "a process that has not written its name yet"
            close(fd)
            throw .compactionRunning(holder: holder.trimmingSuffixNewlines)
        }
        let text = "pid \(getpid()) since \(LedgerClock.system.now().rfc3339)\n"
        _ = ftruncate(fd, 0)
        _ = text.utf8CString.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count - 1, 0) }
    }

    func release() {
        guard fd >= 0 else { return }
        _ = ftruncate(fd, 0)
        close(fd)  // releases the flock
        fd = -1
    }

    deinit { release() }
}

extension String {
    var trimmingSuffixNewlines: String {
        var copy = self
        while copy.last == "\n" { copy.removeLast() }
        return copy
    }
}
