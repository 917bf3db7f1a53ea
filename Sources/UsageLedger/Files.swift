import LMDBStorage
import LedgerCore
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

/// A backup's target directory, made ready to receive `data.mdb`: created with mode 0700 when missing,
/// set to 0700 when it is an existing empty directory, refused (untouched) otherwise.
struct BackupTarget {
    let path: String
    /// Whether this backup created the directory (a failed copy then removes it again).
    let created: Bool

    init(_ path: String) throws(LedgerError) {
        self.path = path
        var info = stat()
        if stat(path, &info) != 0 {
            let code = errno
            guard code == ENOENT, mkdir(path, 0o700) == 0 else {
                let failure = code == ENOENT ? errno : code
                throw .cannotOpen(path: path, reason: String(cString: strerror(failure)))
            }
            created = true
            return
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw .targetExists(path: path, reason: "is not a directory") }
        if let entry = Self.firstEntry(of: path) {
            throw .targetExists(path: path, reason: "is not empty (it holds '\(entry)')")
        }
        // The copy holds every event: no other local user may read it, whatever the directory was.
        guard chmod(path, 0o700) == 0 else {
            throw .cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        created = false
    }

    /// The data file's path in the target.
    var dataFile: String { path + "/data.mdb" }

    /// Undoes what a failed copy left: the directory when this backup created it.
    func discard() {
        if created { rmdir(path) }
    }

    /// Flushes the directory entry of the new file, so that the copy survives a crash once written.
    func syncDirectory() {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// The name of some entry of `directory` other than `.` and `..`, or nil when it is empty.
    private static func firstEntry(of directory: String) -> String? {
        guard let stream = opendir(directory) else { return nil }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { return name }
        }
        return nil
    }
}
