/// The on-disk format's version: `Schema` declares its tables and their codecs, `docs/format.md` is their
/// prose; change them together, and bump `currentVersion` for any incompatible change.
enum StorageFormat {
    /// The on-disk format this build writes and reads.
    static let currentVersion: UInt32 = 6
}
