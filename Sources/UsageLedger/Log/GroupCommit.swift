import LMDBStorage

#if canImport(Glibc)
import Glibc
#endif

/// Combines concurrent appends into one write transaction: with `full` durability a commit costs two
/// fsyncs whatever it holds, so appends from many threads, one commit each, ran no faster than from one.
///
/// Each caller queues its prepared events and waits. When no commit is under way, one waiting caller
/// becomes the leader: it takes every queued request (in arrival order, up to `maximumGroupEvents`
/// events; a larger request goes alone), applies each one's events in one write transaction as if they
/// had been appended one request after the other, commits, and hands every request its own result. The
/// requests that arrive while that commit runs form the next group; its leader waits up to 200 µs for the
/// callers just served to queue again (see `gather`). So a caller waits for at most the commit under way,
/// that pause, and its own commit; it gets its outcomes only once its events are durable; a rejected event
/// fails only itself. A failure of the ledger (`ledger_full`, `storage`) fails every request of its group,
/// and nothing of the group is written.
final class GroupCommit: @unchecked Sendable {
    // @unchecked: every field is guarded by `mutex`.

    /// The most events one group transaction takes from the queue (a single larger request goes alone).
    static let maximumGroupEvents = 10_000

    /// One caller's events, and its result once its group committed.
    final class Request: @unchecked Sendable {
        // @unchecked: `prepared` and `recordedAt` never change; `result` and `wakeup` are used under the
        // queue's mutex.
        let prepared: [Result<UsageEvent, LedgerError>]
        let recordedAt: Timestamp
        fileprivate var result: Result<AppendResult, LedgerError>?
        /// Signalled when the result is set, or when this request is first in the queue and may lead: a
        /// caller is woken only when there is something for it to do (16 waiting threads on 2 cores spent
        /// more time waking up to a broadcast than committing).
        fileprivate let wakeup = Condition()

        init(prepared: [Result<UsageEvent, LedgerError>], recordedAt: Timestamp) {
            self.prepared = prepared
            self.recordedAt = recordedAt
        }
    }

    /// What one group's commit gave each of its requests, in order, or the group's failure.
    typealias Committer = ([Request]) -> Result<[AppendResult], LedgerError>

    /// The longest a leader waits for more calls before it commits: 200 µs.
    static let gatheringMicroseconds = 200

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Signalled on each arrival while a leader is gathering.
    private let arrivals = Condition()
    private var gathering = false
    /// The calls that were under way when the last group committed: its own and those queued meanwhile.
    private var lastConcurrency = 0
    private var queue: [Request] = []
    private var committing = false
    /// Group transactions committed, and the requests they held, over the ledger handle's life.
    private var groupsCommitted = 0
    private var requestsCommitted = 0

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Queues `request` and returns its result once a group holding it has committed (or failed).
    /// `commit` runs on whichever caller leads that group.
    func submit(_ request: Request, commit: Committer) -> Result<AppendResult, LedgerError> {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        queue.append(request)
        if gathering { arrivals.signal() }
        while true {
            if let result = request.result { return result }
            if !committing {
                lead(commit)
                continue
            }
            request.wakeup.wait(mutex)
        }
    }

    /// Takes the next group off the queue, commits it with the mutex released, and hands out the results.
    /// Called with the mutex held; returns with it held.
    private func lead(_ commit: Committer) {
        committing = true
        gather()
        var taken = 0, events = 0
        while taken < queue.count,
            taken == 0 || events + queue[taken].prepared.count <= Self.maximumGroupEvents
        {
            events += queue[taken].prepared.count
            taken += 1
        }
        let group = Array(queue.prefix(taken))
        queue.removeFirst(taken)
        pthread_mutex_unlock(mutex)
        let outcome = commit(group)
        pthread_mutex_lock(mutex)
        switch outcome {
        case .success(let results):
            for (request, result) in zip(group, results) { request.result = .success(result) }
            groupsCommitted += 1
            requestsCommitted += group.count
        case .failure(let error):
            for request in group { request.result = .failure(error) }
        }
        committing = false
        lastConcurrency = group.count + queue.count
        for request in group { request.wakeup.signal() }
        // The first of those that queued meanwhile leads the next group.
        queue.first?.wakeup.signal()
    }

    /// Waits, at most `gatheringMicroseconds`, until as many calls are queued as were under way when the
    /// last group committed. The callers of that group were woken only then, and without the wait they
    /// would queue behind the next commit: the groups would hold half the callers each. Called with the
    /// mutex held.
    private func gather() {
        guard queue.count < lastConcurrency else { return }
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_nsec += Self.gatheringMicroseconds * 1_000
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        gathering = true
        // 0: an arrival (or a spurious wakeup); anything else (ETIMEDOUT) ends the wait.
        while queue.count < lastConcurrency, arrivals.wait(mutex, until: &deadline) == 0 {}
        gathering = false
    }

    /// Calls queued and not yet taken by a leader.
    var queuedCount: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return queue.count
    }

    /// Groups committed and requests they held so far.
    var counts: (groups: Int, requests: Int) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return (groupsCommitted, requestsCommitted)
    }
}

/// A pthread condition variable (ThreadSanitizer sees pthread calls, see `Locked`), waited on with the
/// group-commit mutex.
private final class Condition: @unchecked Sendable {
    // @unchecked: pthread condition variables are made to be shared between threads.
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        condition.deallocate()
    }

    func wait(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) { pthread_cond_wait(condition, mutex) }

    /// Waits until signalled or `deadline` (CLOCK_REALTIME); returns 0 when signalled (or woken spuriously).
    func wait(_ mutex: UnsafeMutablePointer<pthread_mutex_t>, until deadline: inout timespec) -> Int32 {
        pthread_cond_timedwait(condition, mutex, &deadline)
    }

    func signal() { pthread_cond_signal(condition) }
}
