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
        if CommandLine.arguments.count == 3, CommandLine.arguments[1] == "--write-seeds" {
            for (name, bytes) in FuzzEntryPoints.storedRecordSeeds() {
                guard let file = fopen(CommandLine.arguments[2] + "/" + name, "wb") else { exit(2) }
                fwrite(bytes, 1, bytes.count, file)
                fclose(file)
            }
            return
        }
        for path in CommandLine.arguments.dropFirst() {
            guard let file = fopen(path, "rb") else {
                print("cannot open \(path)")
                exit(2)
            }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let got = fread(&buffer, 1, buffer.count, file)
                if got <= 0 { break }
                bytes += buffer[0..<got]
            }
            fclose(file)
            bytes.withUnsafeBytes { FuzzEntryPoints.storedRecord($0) }
        }
        print("replayed \(CommandLine.arguments.count - 1) inputs")
        #endif
    }
}
