import LMDBStorage
#if canImport(Glibc)
import Glibc
#endif

/// Creates `path` as a directory with mode 0700 unless it exists.
func makeDirectory(_ path: String) throws(StorageError) {
    if mkdir(path, 0o700) != 0 && errno != EEXIST {
        let code = errno
        throw .cannotOpen(path: path, errno: code, reason: String(cString: strerror(code)))
    }
}
