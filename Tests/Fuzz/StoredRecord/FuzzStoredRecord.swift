// A fuzz target. Built by `make fuzz` (-sanitize=fuzzer, -D FUZZING) libFuzzer drives it; built
// normally it replays the files named on its command line (the seed corpus), as the tests do.
import CFuzzSupport
import UsageLedger
#if canImport(Glibc)
import Glibc
#endif

#if FUZZING
/// libFuzzer's entry point: one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzEntryPoints.storedRecord(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#endif

@main
struct FuzzStoredRecord {
    static func main() {
        #if FUZZING
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) })
        #else
        exit(
            FuzzEntryPoints.replayCommandLine(
                CommandLine.arguments, entry: FuzzEntryPoints.storedRecord, seeds: FuzzEntryPoints.storedRecordSeeds()))
        #endif
    }
}
