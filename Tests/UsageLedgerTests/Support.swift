import Foundation
import Testing
import LMDBStorage
@testable import UsageLedger

/// A fresh directory under the system's temporary directory, removed when the test is done with it.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "usage-ledger-test-XXXXXX").utf8CString)
        guard
            let made = template.withUnsafeMutableBufferPointer({ buffer in buffer.baseAddress.flatMap { mkdtemp($0) } })
        else {
            throw LedgerError.invalidArgument(reason: "mkdtemp failed")
        }
        path = String(cString: made)
    }

    /// A path inside the directory.
    func child(_ name: String) -> String { path + "/" + name }

    /// Writes `text` to a file in the directory and returns its path.
    func file(_ name: String, _ text: String) throws -> String {
        let target = child(name)
        try text.write(toFile: target, atomically: false, encoding: .utf8)
        return target
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A ledger clock fixed at 2026-11-24T12:00:00Z, after every instant the tests use.
let testNow = Timestamp(microseconds: 1_795_521_600_000_000)

/// Opens a ledger in `directory` with the fixed test clock.
func openLedger(
    _ directory: TemporaryDirectory, name: String = "ledger", configure: (inout LedgerOptions) -> Void = { _ in }
) throws -> Ledger {
    var options = LedgerOptions()
    options.clock = .fixed(testNow)
    options.durability = .noSync
    configure(&options)
    return try Ledger(path: directory.child(name), options: options)
}

func ts(_ text: String) -> Timestamp {
    do { return try Timestamp(rfc3339: text) } catch { Issue.record("bad test timestamp \(text)"); return .earliest }
}

func started(
    _ id: String, _ resource: String = "app/a1", owner: String = "org-1", at: String = "2026-11-01T10:00:00Z",
    footprint: Meters = ["instances": 1, "memory_mb": 512]
) -> UsageEvent {
    UsageEvent(
        id: id, kind: .started, resource: ResourceID(parsing: resource) ?? ResourceID(type: "x", id: "x"), owner: owner,
        occurredAt: ts(at), footprint: footprint)
}

func stopped(_ id: String, _ resource: String = "app/a1", owner: String = "org-1", at: String = "2026-11-01T11:00:00Z")
    -> UsageEvent
{
    UsageEvent(
        id: id, kind: .stopped, resource: ResourceID(parsing: resource) ?? ResourceID(type: "x", id: "x"), owner: owner,
        occurredAt: ts(at))
}

/// The result of running the `usage-ledger` executable.
struct ProcessResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// The `usage-ledger` executable built beside the test bundle.
var cliPath: String {
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return executable.deletingLastPathComponent().appendingPathComponent("usage-ledger").path
}

/// `usage-ledger-export`, built beside `usage-ledger`.
var exportPath: String {
    URL(fileURLWithPath: cliPath).deletingLastPathComponent().appendingPathComponent("usage-ledger-export").path
}

/// Starts `executable` (default `usage-ledger`) with `arguments`, feeding `stdin` when given.
func startCLI(
    _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:], executable: String = cliPath
) throws -> (Process, Pipe, Pipe) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    for (key, value) in environment { env[key] = value }
    process.environment = env
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    if let stdin {
        let input = Pipe()
        process.standardInput = input
        try process.run()
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try input.fileHandleForWriting.close()
    } else {
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }
    return (process, out, err)
}

/// Runs `executable` (default `usage-ledger`) to completion.
func runCLI(
    _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:], executable: String = cliPath
) throws -> ProcessResult {
    let (process, out, err) = try startCLI(arguments, stdin: stdin, environment: environment, executable: executable)
    return finish(process, out, err)
}

/// Waits for a started process and collects its output.
func finish(_ process: Process, _ out: Pipe, _ err: Pipe) -> ProcessResult {
    // Drain both pipes at once so that a child filling one of them can never block.
    let collected = Locked<Data>(Data())
    let done = DispatchSemaphore(value: 0)
    let errHandle = err.fileHandleForReading
    DispatchQueue.global().async {
        let data = errHandle.readDataToEndOfFile()
        collected.withLock { $0 = data }
        done.signal()
    }
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    done.wait()
    let stderr = collected.withLock { $0 }
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
        stderr: String(decoding: stderr, as: UTF8.self))
}

/// The repository's root, found from this source file.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path
