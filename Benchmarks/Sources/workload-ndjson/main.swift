import Foundation
import Workload

// Writes the benchmark workload as NDJSON to standard output, so that the CLI itself can be profiled on
// exactly the events the benchmarks use: `workload-ndjson 20000 > w.ndjson`, then
// `valgrind --tool=callgrind usage-ledger append --ledger L --now ... w.ndjson`.
let arguments = CommandLine.arguments.dropFirst()
guard let count = arguments.first.flatMap(Int.init), count > 0 else {
    FileHandle.standardError.write(
        Data(
            ("usage: workload-ndjson COUNT [RESOURCES]   (events, resources (default COUNT / 10); prints the "
                + "workload's end instant on stderr)\n").utf8))
    exit(2)
}
let resources = arguments.dropFirst().first.flatMap(Int.init)
let workload = Workload(count: count, resources: resources)
FileHandle.standardOutput.write(workload.ndjson)
FileHandle.standardError.write(Data("end \(workload.end.microseconds)\n".utf8))
