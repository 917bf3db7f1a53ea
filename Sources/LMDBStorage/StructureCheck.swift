import CLMDB
#if canImport(Glibc)
import Glibc
#endif

/// What a structural check of the data file walked.
public struct StructureReport: Sendable, Equatable {
    /// Branch, leaf and overflow pages reached from the roots of the snapshot checked.
    public var pages: Int
    /// Key/value pairs in the leaves, over every database (named databases, the main and the free one).
    public var entries: Int
}

extension Environment {
    /// Walks every B-tree of the current snapshot page by page, reading the data file directly, and
    /// checks what LMDB would otherwise trust: page numbers, kinds and bounds, node extents, child and
    /// overflow page numbers, tree depth, and the page and entry counts of each database.
    ///
    /// LMDB keeps no checksums and follows page pointers without bounds checks, so a flipped byte in a
    /// page header or a branch node can make it read out of bounds and crash the process. Run this before
    /// trusting a file of unknown health (the ledger's `verify` does); it throws `.corrupted` naming the
    /// page instead. A read transaction pins the snapshot so that concurrent writers cannot reuse its pages.
    public func checkStructure() throws(StorageError) -> StructureReport {
        let txn = try begin(flags: UInt32(MDB_RDONLY))
        defer {
            mdb_txn_abort(txn)
            end()
        }
        // Every commit, from any process, gets a new transaction id: the same id is the same snapshot.
        let snapshot = UInt64(mdb_txn_id(txn))
        if let checked = checkedSnapshot.withLock({ $0 }), checked.id == snapshot { return checked.report }
        var fd: Int32 = -1
        try check(mdb_env_get_fd(handle, &fd))
        var checker = PageWalker(fd: fd, pageSize: statistics().pageSize, snapshot: snapshot)
        let report = try checker.run()
        checkedSnapshot.withLock { $0 = (snapshot, report) }
        return report
    }
}

/// Reads pages with `pread` and validates them against LMDB 0.9's on-disk layout (`mdb.c`: `MDB_page`,
/// `MDB_meta`, `MDB_db`, `MDB_node`), little-endian on the platforms this builds for.
struct PageWalker {
    let fd: Int32
    let pageSize: Int
    let snapshot: UInt64
    private var fileBytes = 0
    private var lastPage: UInt64 = 0
    private var visited = Set<UInt64>()
    private var report = StructureReport(pages: 0, entries: 0)

    // Layout constants from mdb.c.
    static let headerSize = 16
    static let metaMagic: UInt32 = 0xBEEF_C0DE
    static let branch: UInt16 = 0x01, leaf: UInt16 = 0x02, overflow: UInt16 = 0x04, meta: UInt16 = 0x08
    static let bigData: UInt16 = 0x01, subData: UInt16 = 0x02, dupData: UInt16 = 0x04
    static let invalidPage = UInt64.max
    static let nodeHeader = 8
    static let databaseRecordSize = 48

    init(fd: Int32, pageSize: Int, snapshot: UInt64) {
        self.fd = fd
        self.pageSize = pageSize
        self.snapshot = snapshot
    }

    /// A B-tree's description (`MDB_db`).
    struct Tree {
        var flags: UInt16, depth: UInt16
        var branchPages: UInt64, leafPages: UInt64, overflowPages: UInt64, entries: UInt64, root: UInt64

        init(_ bytes: ArraySlice<UInt8>) {
            let b = Array(bytes)
            flags = PageWalker.u16(b, 4)
            depth = PageWalker.u16(b, 6)
            branchPages = PageWalker.u64(b, 8)
            leafPages = PageWalker.u64(b, 16)
            overflowPages = PageWalker.u64(b, 24)
            entries = PageWalker.u64(b, 32)
            root = PageWalker.u64(b, 40)
        }
    }

    mutating func run() throws(StorageError) -> StructureReport {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw .corrupted(code: nil, detail: "cannot stat the data file: \(String(cString: strerror(errno)))")
        }
        fileBytes = Int(info.st_size)
        guard pageSize >= 512, fileBytes >= 2 * pageSize else {
            throw .corrupted(code: nil, detail: "the data file is shorter than its two meta pages")
        }
        // The meta page of the snapshot: the one whose transaction id is the read transaction's.
        var chosen: [UInt8]?
        for number in 0..<2 {
            let page = try read(UInt64(number))
            guard Self.u32(page, 16) == Self.metaMagic, Self.u16(page, 10) & Self.meta != 0 else {
                throw .corrupted(code: nil, detail: "meta page \(number) has a bad magic number or kind")
            }
            if Self.u64(page, 144) == snapshot { chosen = page }
        }
        guard let meta = chosen else {
            throw .corrupted(
                code: nil, detail: "no meta page belongs to the snapshot being checked (transaction \(snapshot))")
        }
        lastPage = Self.u64(meta, 136)
        // Compared by division: a damaged last page number must not overflow the check itself.
        guard lastPage >= 1, lastPage < UInt64(fileBytes / pageSize) else {
            throw .corrupted(
                code: nil,
                detail: "the meta page's last page \(lastPage) lies beyond the data file (\(fileBytes) bytes)")
        }
        try walk(Tree(meta[40..<88]), name: "the free-page database", holdsDatabases: false)
        try walk(Tree(meta[88..<136]), name: "the main database", holdsDatabases: true)
        return report
    }

    /// Walks one tree from its root, depth first, checking every page and the tree's counts.
    private mutating func walk(_ tree: Tree, name: String, holdsDatabases: Bool) throws(StorageError) {
        if tree.root == Self.invalidPage {
            guard tree.entries == 0, tree.depth == 0 else {
                throw .corrupted(code: nil, detail: "\(name) has no root but claims entries")
            }
            return
        }
        var counted = (branch: UInt64(0), leaf: UInt64(0), overflow: UInt64(0), entries: UInt64(0))
        var stack: [(page: UInt64, depth: UInt16)] = [(tree.root, 1)]
        var named: [(Tree, String)] = []
        while let (number, depth) = stack.popLast() {
            let page = try claim(number, in: name)
            let flags = Self.u16(page, 10)
            let lower = Int(Self.u16(page, 12)), upper = Int(Self.u16(page, 14))
            guard flags & ~UInt16(0x10) == Self.branch || flags & ~UInt16(0x10) == Self.leaf else {
                throw .corrupted(
                    code: nil, detail: "page \(number) of \(name) is neither a branch nor a leaf (flags \(flags))")
            }
            guard lower >= Self.headerSize, lower % 2 == 0, lower <= upper, upper <= pageSize else {
                throw .corrupted(
                    code: nil, detail: "page \(number) of \(name) has bad bounds (lower \(lower), upper \(upper))")
            }
            let count = (lower - Self.headerSize) / 2
            let isBranch = flags & Self.branch != 0
            guard depth <= tree.depth, isBranch == (depth < tree.depth) else {
                throw .corrupted(
                    code: nil, detail: "page \(number) of \(name) is at depth \(depth) of a tree \(tree.depth) deep")
            }
            guard count > 0 || number == tree.root else {
                throw .corrupted(code: nil, detail: "page \(number) of \(name) is empty")
            }
            if isBranch { counted.branch += 1 } else { counted.leaf += 1; counted.entries += UInt64(count) }
            for index in 0..<count {
                let offset = Int(Self.u16(page, Self.headerSize + 2 * index))
                guard offset >= upper, offset + Self.nodeHeader <= pageSize else {
                    throw .corrupted(
                        code: nil, detail: "node \(index) of page \(number) of \(name) lies outside the page")
                }
                let low = UInt64(Self.u16(page, offset)), high = UInt64(Self.u16(page, offset + 2))
                let nodeFlags = Self.u16(page, offset + 4), keySize = Int(Self.u16(page, offset + 6))
                let dataStart = offset + Self.nodeHeader + keySize
                guard dataStart <= pageSize else {
                    throw .corrupted(
                        code: nil, detail: "the key of node \(index) of page \(number) of \(name) runs past the page")
                }
                if isBranch {
                    stack.append((low | high << 16 | UInt64(nodeFlags) << 32, depth + 1))
                    continue
                }
                let dataSize = Int(low | high << 16)
                guard nodeFlags & ~(Self.bigData | Self.subData) == 0, nodeFlags & Self.dupData == 0 else {
                    throw .corrupted(
                        code: nil, detail: "node \(index) of page \(number) of \(name) has unknown flags \(nodeFlags)")
                }
                if nodeFlags & Self.bigData != 0 {
                    guard dataStart + 8 <= pageSize else {
                        throw .corrupted(
                            code: nil, detail: "node \(index) of page \(number) of \(name) runs past the page")
                    }
                    counted.overflow += try checkOverflow(Self.u64(page, dataStart), bytes: dataSize, in: name)
                    continue
                }
                guard dataStart + dataSize <= pageSize else {
                    throw .corrupted(
                        code: nil, detail: "the value of node \(index) of page \(number) of \(name) runs past the page")
                }
                if nodeFlags & Self.subData != 0 {
                    guard holdsDatabases, dataSize == Self.databaseRecordSize else {
                        throw .corrupted(
                            code: nil,
                            detail: "node \(index) of page \(number) of \(name) claims a sub-database it cannot hold")
                    }
                    let key = String(
                        decoding: page[(offset + Self.nodeHeader)..<(offset + Self.nodeHeader + keySize)], as: UTF8.self
                    )
                    named.append((Tree(page[dataStart..<(dataStart + dataSize)]), "database '\(key)'"))
                }
            }
        }
        guard counted == (tree.branchPages, tree.leafPages, tree.overflowPages, tree.entries) else {
            throw .corrupted(
                code: nil,
                detail:
                    "\(name) claims \(tree.branchPages) branch, \(tree.leafPages) leaf, \(tree.overflowPages) "
                    + "overflow pages and \(tree.entries) entries; its tree "
                    + "has \(counted.branch), \(counted.leaf), \(counted.overflow) and \(counted.entries)"
            )
        }
        report.entries += Int(counted.entries)
        for (subtree, subname) in named { try walk(subtree, name: subname, holdsDatabases: false) }
    }

    /// Checks a run of overflow pages holding `bytes` bytes; returns how many pages it spans.
    private mutating func checkOverflow(_ number: UInt64, bytes: Int, in name: String) throws(StorageError) -> UInt64 {
        let page = try claim(number, in: name)
        let pages = UInt64(Self.u32(page, 12))
        guard Self.u16(page, 10) & ~UInt16(0x10) == Self.overflow, pages >= 1, number + pages - 1 <= lastPage,
            UInt64(bytes + Self.headerSize) <= pages * UInt64(pageSize)
        else {
            throw .corrupted(code: nil, detail: "overflow page \(number) of \(name) is malformed")
        }
        for extra in 1..<pages where !visited.insert(number + extra).inserted {
            throw .corrupted(code: nil, detail: "page \(number + extra) of \(name) is reached twice")
        }
        report.pages += Int(pages) - 1
        return pages
    }

    /// Reads page `number`, once: a page reached twice means a cycle or a shared page.
    private mutating func claim(_ number: UInt64, in name: String) throws(StorageError) -> [UInt8] {
        guard number >= 2, number <= lastPage else {
            throw .corrupted(code: nil, detail: "\(name) points to page \(number), outside pages 2 to \(lastPage)")
        }
        guard visited.insert(number).inserted else {
            throw .corrupted(code: nil, detail: "page \(number) of \(name) is reached twice")
        }
        let page = try read(number)
        guard Self.u64(page, 0) == number else {
            throw .corrupted(code: nil, detail: "page \(number) of \(name) says it is page \(Self.u64(page, 0))")
        }
        report.pages += 1
        return page
    }

    private func read(_ number: UInt64) throws(StorageError) -> [UInt8] {
        var page = [UInt8](repeating: 0, count: pageSize)
        let offset = off_t(number) * off_t(pageSize)
        let got = page.withUnsafeMutableBytes { pread(fd, $0.baseAddress, pageSize, offset) }
        guard got == pageSize else {
            throw .corrupted(code: nil, detail: "page \(number) cannot be read whole (got \(got) bytes)")
        }
        return page
    }

    static func u16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
    static func u32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * $1) } }
    static func u64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * $1) } }
}

extension PageWalker {
    /// Checks the two meta pages of the data file at `path` before LMDB maps it. LMDB takes the page size
    /// and the last page number from the newer meta page and reads the map by them without bounds checks,
    /// so one flipped bit there (a page size of 2 MiB) makes `mdb_env_open` read past the end of the file
    /// and die of SIGBUS. A missing or empty file is left to LMDB, which creates or refuses it.
    static func checkMetaPages(path: String) throws(StorageError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0 else { return }
        let fileBytes = UInt64(info.st_size)
        func refuse(_ reason: String) -> StorageError {
            .corrupted(code: nil, detail: "'\(path)' is not an LMDB data file (\(reason))")
        }
        var pageSize: UInt64 = 0
        for number in 0..<2 {
            // LMDB reads the second meta page at the first one's page size.
            var page = [UInt8](repeating: 0, count: 152)
            let offset = off_t(UInt64(number) * pageSize)
            let got = page.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            guard got == page.count else { throw refuse("meta page \(number) is cut short") }
            guard u32(page, 16) == metaMagic, u32(page, 20) == 1, u16(page, 10) & meta != 0 else {
                throw refuse("meta page \(number) has a bad magic number, version or kind")
            }
            let size = UInt64(u32(page, 40))
            guard size >= 512, size <= 65_536, size & (size - 1) == 0, number == 0 || size == pageSize else {
                throw refuse("meta page \(number) claims a page size of \(size) bytes")
            }
            pageSize = size
            // Compared by division: a damaged last page number must not overflow the check itself.
            let lastPage = u64(page, 136)
            guard fileBytes >= 2 * size, lastPage < fileBytes / size else {
                throw refuse("meta page \(number) claims page \(lastPage), beyond the file's \(fileBytes) bytes")
            }
        }
    }
}
