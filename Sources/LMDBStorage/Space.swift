import CLMDB

#if canImport(Glibc)
import Glibc
#endif

/// How the pages of a data file are used, as one snapshot sees them.
///
/// LMDB never shrinks its file: pages that commits free go onto a free list and are reused by later
/// writes once no reader can still see them. So the high-water mark (`usedBytes`) says how far the file
/// was ever written, not how much of it holds data; `freeBytes` is what later writes can reuse, and a
/// compacting copy writes only `compactedCopyBytes`.
public struct SpaceStatistics: Sendable, Equatable {
    /// The page size.
    public var pageSize: Int
    /// The size of the data file.
    public var fileBytes: Int
    /// The high-water mark: the last page ever used plus one, times the page size.
    public var usedBytes: Int
    /// Pages on LMDB's free list (freed by earlier commits; reusable once no reader sees them), in bytes.
    public var freeBytes: Int
    /// Pages of the trees that hold data (the two meta pages, the main tree and the named tables), in bytes:
    /// the size of a compacting copy.
    public var compactedCopyBytes: Int

    /// What a compacting copy gives back: the file's bytes beyond `compactedCopyBytes`.
    public var reclaimableBytes: Int { max(0, fileBytes - compactedCopyBytes) }
}

/// LMDB's two built-in trees (`FREE_DBI` and `MAIN_DBI` in mdb.c; lmdb.h does not export them).
private let freeListDBI: MDB_dbi = 0
private let mainDBI: MDB_dbi = 1

extension ReadableTransaction where Self: ~Copyable {
    /// How the data file's pages are used: the free list read in this snapshot, and the pages of the main
    /// tree and of `tables` (every named table of the file, for `compactedCopyBytes` to be exact).
    public func spaceStatistics(tables: [TableID]) throws(StorageError) -> SpaceStatistics {
        guard let env = mdb_txn_env(core.handle) else { throw .lmdb(code: EINVAL) }
        var info = MDB_envinfo()
        var main = MDB_stat()
        mdb_env_info(env, &info)
        try check(mdb_stat(core.handle, mainDBI, &main))
        let pageSize = Int(main.ms_psize)
        var treePages = 2 + Self.pages(main)
        for table in tables {
            var stat = MDB_stat()
            try check(mdb_stat(core.handle, table.dbi, &stat))
            treePages += Self.pages(stat)
        }
        return SpaceStatistics(
            pageSize: pageSize, fileBytes: try fileBytes(env),
            usedBytes: (info.me_last_pgno + 1) * pageSize, freeBytes: try freeListPages() * pageSize,
            compactedCopyBytes: treePages * pageSize)
    }

    private static func pages(_ stat: MDB_stat) -> Int {
        stat.ms_branch_pages + stat.ms_leaf_pages + stat.ms_overflow_pages
    }

    private func fileBytes(_ env: OpaquePointer) throws(StorageError) -> Int {
        var fd: Int32 = -1
        try check(mdb_env_get_fd(env, &fd))
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .lmdb(code: errno) }
        return Int(info.st_size)
    }

    /// The pages listed on the free list: each entry is an ID list whose first word is its length.
    private func freeListPages() throws(StorageError) -> Int {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(core.handle, freeListDBI, &cursor))
        guard let cursor else { throw .lmdb(code: EINVAL) }
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val(), value = MDB_val()
        var total = 0
        var rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
        while rc == MDB_SUCCESS {
            guard value.mv_size >= MemoryLayout<Int>.size, let data = value.mv_data else {
                throw .corrupted(code: nil, detail: "a free-list entry of \(value.mv_size) bytes")
            }
            total += data.loadUnaligned(as: Int.self)
            rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
        }
        guard rc == MDB_NOTFOUND else { throw .from(code: rc) }
        return total
    }
}
