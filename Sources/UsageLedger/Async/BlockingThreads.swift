#if canImport(Glibc)
import Glibc
#endif

/// A fixed set of threads of its own on which `async` calls run the ledger's blocking work (LMDB
/// transactions, fsync), so that they never hold one of Swift's cooperative threads, of which there are
/// only as many as cores. Jobs run in submission order, at most `BlockingThreads.count` at once; the
/// threads start on first use and live as long as the process.
final class BlockingThreads: @unchecked Sendable {
    // @unchecked: `queue`, `head`, `started` and `idle` are touched only with `mutex` held; the threads wait on
    // `condition` with it.
    /// The process's pool.
    static let shared = BlockingThreads()
    /// How many blocking calls run at once: enough for group commit to gather a group (16 concurrent
    /// appends measured 6.8× one thread), few enough to cost little when idle.
    static let count = 16

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var queue: [@Sendable () -> Void] = []
    private var head = 0
    private var started = 0
    /// Threads waiting for a job (a woken one counts until it holds the lock again).
    private var idle = 0

    private init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        pthread_cond_init(condition, nil)
    }

    /// Queues `job`; it runs on one of the pool's threads. Throws only when not one thread could start.
    func submit(_ job: @escaping @Sendable () -> Void) throws(LedgerError) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        queue.append(job)
        // A thread more whenever jobs outnumber idle threads, up to the bound: the pool grows only as far as
        // calls overlap.
        if started < Self.count && queue.count - head > idle {
            let status = startThread()
            if status != 0 && started == 0 {
                queue.removeLast()
                throw .storage(
                    code: status,
                    reason: "cannot start a thread for blocking calls: \(String(cString: strerror(status)))")
            }
        }
        pthread_cond_signal(condition)
    }

    /// Starts one more worker (with `mutex` held); returns pthread_create's status.
    private func startThread() -> Int32 {
        var thread = pthread_t()
        let context = Unmanaged.passUnretained(self).toOpaque()
        let status = pthread_create(
            &thread, nil,
            { context in
                guard let context else { return nil }
                Unmanaged<BlockingThreads>.fromOpaque(context).takeUnretainedValue().work()
            }, context)
        if status == 0 {
            started += 1
            pthread_detach(thread)
        }
        return status
    }

    /// A worker's loop: take the oldest job, run it without the lock, repeat.
    private func work() -> Never {
        while true {
            pthread_mutex_lock(mutex)
            while head == queue.count {
                idle += 1
                pthread_cond_wait(condition, mutex)
                idle -= 1
            }
            let job = queue[head]
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            }
            pthread_mutex_unlock(mutex)
            job()
        }
    }

    /// Runs `body` on the pool and resumes the calling task with its result.
    func run<R: Sendable>(_ body: @escaping @Sendable () throws(LedgerError) -> R) async throws(LedgerError) -> R {
        let result: Result<R, LedgerError> = await withCheckedContinuation { continuation in
            do throws(LedgerError) {
                try submit { continuation.resume(returning: Result { () throws(LedgerError) in try body() }) }
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        return try result.get()
    }
}
