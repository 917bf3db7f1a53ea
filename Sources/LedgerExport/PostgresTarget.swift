import LedgerCore

/// Where to export: a `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE` URL, parsed.
public struct PostgresTarget: Sendable, Equatable {
    /// The role to log in as.
    public var user: String
    /// Its password, if the server asks for one.
    public var password: String?
    /// The server's host name or address.
    public var host: String
    /// The server's port (default 5432).
    public var port: Int
    /// The database to export into.
    public var database: String

    /// Parses `url`; user, password and database may be percent-encoded.
    ///
    /// - Throws: `ExportError.invalidURL` naming what is wrong.
    public init(url: String) throws(ExportError) {
        var rest = Substring(url)
        guard let scheme = ["postgresql://", "postgres://"].first(where: { rest.hasPrefix($0) }) else {
            throw .invalidURL("'\(url)' does not start with postgresql://")
        }
        rest = rest.dropFirst(scheme.count)
        guard let at = rest.lastIndex(of: "@") else { throw .invalidURL("'\(url)' names no USER@ before the host") }
        let credentials = rest[..<at]
        rest = rest[rest.index(after: at)...]
        guard let slash = rest.firstIndex(of: "/") else { throw .invalidURL("'\(url)' names no /DATABASE") }
        let hostPort = rest[..<slash]
        let database = try Self.decode(rest[rest.index(after: slash)...], "database", url)
        let userPart = credentials.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        user = try Self.decode(userPart[0], "user", url)
        password = userPart.count > 1 ? try Self.decode(userPart[1], "password", url) : nil
        (host, port) = try Self.hostAndPort(hostPort, url)
        guard !user.isEmpty, !database.isEmpty, !database.contains("/"), !database.contains("?") else {
            throw .invalidURL("'\(url)' needs a user and a database (no query parameters)")
        }
        self.database = database
    }

    private static func hostAndPort(_ text: Substring, _ url: String) throws(ExportError) -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), !text.hasSuffix("]") else {
            guard !text.isEmpty else { throw .invalidURL("'\(url)' names no host") }
            return (String(text), 5432)
        }
        guard let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port), colon > text.startIndex
        else { throw .invalidURL("'\(url)' has no valid HOST:PORT") }
        return (String(text[..<colon]), port)
    }

    /// Percent-decodes one part of the URL.
    private static func decode(_ text: Substring, _ part: String, _ url: String) throws(ExportError) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            else { throw .invalidURL("the \(part) in '\(url)' has a bad percent escape") }
            bytes.append(value)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The URL without its password, for messages.
    public var redacted: String { "postgresql://\(user)@\(host):\(port)/\(database)" }
}
