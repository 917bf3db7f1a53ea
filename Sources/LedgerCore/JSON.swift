/// A parsed JSON value. Numbers keep their source text so that integers are read exactly, never through
/// floating point; objects keep their members in source order.
package indirect enum JSONValue: Sendable, Equatable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// The number's text as written, e.g. `-12` or `1.5e3`.
    case number(String)
    /// A string, unescaped.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object's members in source order (keys are unique: duplicates are a syntax error).
    case object([JSONMember])

    /// A short name of the value's type, for error messages.
    package var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// One member of a JSON object.
package struct JSONMember: Sendable, Equatable {
    /// The key.
    package var key: String
    /// The value.
    package var value: JSONValue
}

/// Where and why a text is not JSON.
package struct JSONSyntaxError: Error, Sendable, Equatable {
    /// The byte offset (from 0) where the problem was found.
    package let offset: Int
    /// The reason, for a person.
    package let reason: String
}

/// A strict RFC 8259 parser: valid UTF-8 only, no duplicate keys in one object, bounded nesting.
package struct JSONParser {
    /// How deep arrays and objects may nest; deeper input is rejected instead of exhausting the stack.
    package static let maximumDepth = 64

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// Parses one JSON text that must span all of `bytes` (surrounding white space allowed).
    package static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(JSONSyntaxError) -> JSONValue {
        guard ASCII.isASCII(bytes) || String(validating: bytes, as: UTF8.self) != nil else {
            throw JSONSyntaxError(offset: firstInvalidUTF8(bytes), reason: "invalid UTF-8")
        }
        var parser = JSONParser(bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.error("unexpected text after the JSON value") }
        return value
    }

    /// Parses a string (convenience for tests and small inputs).
    package static func parse(_ text: String) throws(JSONSyntaxError) -> JSONValue {
        var copy = text
        return try copy.withUTF8 { bytes in Result { () throws(JSONSyntaxError) in try parse(bytes) } }.get()
    }

    private static func firstInvalidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var decoder = UTF8()
        var iterator = bytes.makeIterator()
        var offset = 0
        var consumed = 0
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                offset += UTF8.width(scalar)
                consumed = offset
            case .emptyInput: return consumed
            case .error: return offset
            }
        }
    }

    private func error(_ reason: String) -> JSONSyntaxError { JSONSyntaxError(offset: index, reason: reason) }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws(JSONSyntaxError) -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        case 0xEF where index + 2 < bytes.count && bytes[index + 1] == 0xBB && bytes[index + 2] == 0xBF:
            throw error("unexpected byte-order mark")
        default:
            throw error("unexpected character '\(printable(bytes[index]))'")
        }
    }

    private func printable(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7F ? String(UnicodeScalar(byte)) : "\\u{\(String(byte, radix: 16))}"
    }

    private mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw error("unexpected end of input") }
        let start = word.utf8Start
        for i in 0..<count where bytes[index + i] != start[i] { throw error("invalid literal") }
        index += count
    }

    private mutating func enter() throws(JSONSyntaxError) {
        depth += 1
        guard depth <= Self.maximumDepth else { throw error("nesting deeper than \(Self.maximumDepth) levels") }
    }

    private mutating func parseObject() throws(JSONSyntaxError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        var members: [JSONMember] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let keyOffset = index
            let key = try parseString()
            if members.contains(where: { $0.key == key }) {
                throw JSONSyntaxError(offset: keyOffset, reason: "duplicate key '\(key.prefix(80))'")
            }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                throw error("expected ':' after a key")
            }
            index += 1
            skipWhitespace()
            let value = try parseValue()
            members.append(JSONMember(key: key, value: value))
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in an object") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
            throw error("expected ',' or '}' in an object")
        }
    }

    private mutating func parseArray() throws(JSONSyntaxError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in an array") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(elements) }
            throw error("expected ',' or ']' in an array")
        }
    }

    private mutating func parseNumber() throws(JSONSyntaxError) -> String {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        func digitsFollow() -> Bool { index < bytes.count && bytes[index] >= 0x30 && bytes[index] <= 0x39 }
        guard digitsFollow() else { throw error("expected a digit") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if digitsFollow() { throw error("leading zeros are not allowed") }
        } else {
            while digitsFollow() { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digitsFollow() else { throw error("expected a digit after '.'") }
            while digitsFollow() { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            guard digitsFollow() else { throw error("expected a digit in the exponent") }
            while digitsFollow() { index += 1 }
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    }

    private mutating func parseString() throws(JSONSyntaxError) -> String {
        index += 1
        let start = index
        // Fast path: no escapes, so the bytes (already valid UTF-8) are the string.
        while index < bytes.count {
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                defer { index += 1 }
                return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw error("unescaped control character in a string") }
            index += 1
        }
        var scalars = Array(bytes[start..<index])
        while index < bytes.count {
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: scalars, as: UTF8.self)
            }
            if c < 0x20 { throw error("unescaped control character in a string") }
            if c != UInt8(ascii: "\\") {
                scalars.append(c)
                index += 1
                continue
            }
            index += 1
            guard index < bytes.count else { break }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""): scalars.append(0x22)
            case UInt8(ascii: "\\"): scalars.append(0x5C)
            case UInt8(ascii: "/"): scalars.append(0x2F)
            case UInt8(ascii: "b"): scalars.append(0x08)
            case UInt8(ascii: "f"): scalars.append(0x0C)
            case UInt8(ascii: "n"): scalars.append(0x0A)
            case UInt8(ascii: "r"): scalars.append(0x0D)
            case UInt8(ascii: "t"): scalars.append(0x09)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800...0xDBFF).contains(code) {
                    guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
                        bytes[index + 1] == UInt8(ascii: "u")
                    else {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    index += 2
                    let low = try hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw error("unpaired surrogate in \\u escape") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(code) {
                    throw error("unpaired surrogate in \\u escape")
                }
                guard let scalar = Unicode.Scalar(code) else { throw error("invalid \\u escape") }
                scalars.append(contentsOf: Array(String(scalar).utf8))
            default:
                throw error("invalid escape '\\\(printable(escape))'")
            }
        }
        throw error("unterminated string")
    }

    private mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - 0x30)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - 0x61 + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - 0x41 + 10)
            default: throw error("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }
}

/// Builds compact JSON text; keys are written in the order given.
package struct JSONWriter: Sendable {
    /// The text so far.
    package private(set) var text = ""

    /// An empty writer.
    package init() {}

    /// Appends raw JSON text (a number, `true`, a nested document).
    package mutating func raw(_ json: String) { text.append(json) }

    /// Appends `value` as a JSON string literal.
    package mutating func string(_ value: String) {
        text.append("\"")
        // Most strings need no escape: append them whole instead of scalar by scalar.
        if !value.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C || $0 == 0x7F }) {
            text.append(value)
            text.append("\"")
            return
        }
        var start = value.unicodeScalars.startIndex
        var i = start
        let scalars = value.unicodeScalars
        while i < scalars.endIndex {
            let s = scalars[i]
            let escaped: String?
            switch s {
            case "\"": escaped = "\\\""
            case "\\": escaped = "\\\\"
            case "\n": escaped = "\\n"
            case "\r": escaped = "\\r"
            case "\t": escaped = "\\t"
            default:
                if s.value < 0x20 || s.value == 0x7F {
                    let hex = String(s.value, radix: 16)
                    escaped = "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    escaped = nil
                }
            }
            if let escaped {
                text.unicodeScalars.append(contentsOf: scalars[start..<i])
                text.append(escaped)
                start = scalars.index(after: i)
            }
            i = scalars.index(after: i)
        }
        text.unicodeScalars.append(contentsOf: scalars[start..<scalars.endIndex])
        text.append("\"")
    }

    /// Appends an object built by `body`, which calls `member` for each key.
    package mutating func object(_ body: (inout ObjectWriter) -> Void) {
        var object = ObjectWriter(writer: self)
        // The nested writer must own the text alone, or its first append copies all of it: once per
        // nested object, quadratic in the document (a usage answer of 50,000 rows took minutes).
        text = ""
        object.writer.text.append("{")
        body(&object)
        object.writer.text.append("}")
        self = object.writer
    }

    /// Writes the members of one object.
    package struct ObjectWriter {
        var writer: JSONWriter
        var first = true

        mutating func key(_ name: String) {
            if !first { writer.text.append(",") }
            first = false
            writer.string(name)
            writer.text.append(":")
        }

        /// A string member.
        package mutating func member(_ name: String, _ value: String) { key(name); writer.string(value) }
        /// A string member, `null` when `value` is nil.
        package mutating func member(_ name: String, _ value: String?) {
            key(name)
            if let value { writer.string(value) } else { writer.text.append("null") }
        }
        /// An integer member.
        package mutating func member<I: BinaryInteger>(_ name: String, _ value: I) {
            key(name)
            writer.text.append(String(value))
        }
        /// An integer member, `null` when `value` is nil.
        package mutating func member<I: BinaryInteger>(_ name: String, _ value: I?) {
            key(name)
            writer.text.append(value.map { String($0) } ?? "null")
        }
        /// A boolean member.
        package mutating func member(_ name: String, _ value: Bool) {
            key(name)
            writer.text.append(value ? "true" : "false")
        }
        /// A member whose value is raw JSON text (a number such as an exact decimal, a nested document),
        /// `null` when `json` is nil.
        package mutating func member(_ name: String, json: String?) { key(name); writer.text.append(json ?? "null") }
        /// A nested object member.
        package mutating func member(_ name: String, object body: (inout ObjectWriter) -> Void) {
            key(name)
            writer.object(body)
        }
        /// An array member whose elements `body` writes.
        package mutating func arrayMember(_ name: String, _ body: (inout ArrayWriter) -> Void) {
            key(name)
            writer.array(body)
        }
    }

    /// Appends an array built by `body`, which calls `element` for each element.
    package mutating func array(_ body: (inout ArrayWriter) -> Void) {
        var array = ArrayWriter(writer: self)
        text = ""  // as in `object`: the nested writer owns the text alone
        array.writer.text.append("[")
        body(&array)
        array.writer.text.append("]")
        self = array.writer
    }

    /// Writes the elements of one array.
    package struct ArrayWriter {
        var writer: JSONWriter
        var first = true

        mutating func separate() {
            if !first { writer.text.append(",") }
            first = false
        }

        /// A string element.
        package mutating func element(_ value: String) { separate(); writer.string(value) }
        /// An object element.
        package mutating func element(object body: (inout ObjectWriter) -> Void) {
            separate()
            writer.object(body)
        }
    }
}
