import Testing
@testable import LedgerCore

@Suite("Strict JSON parsing")
struct JSONTests {
    @Test("parses nested values and keeps number text exact")
    func parsesValues() throws {
        let value = try JSONParser.parse(
            #"{"a":[1,-2,3.5e2,true,null],"b":{"c":"d\u00e9\n"},"big":18446744073709551616}"#)
        guard case .object(let members) = value else { Issue.record("not an object"); return }
        #expect(members.map(\.key) == ["a", "b", "big"])
        #expect(members[2].value == .number("18446744073709551616"))
        #expect(members[0].value == .array([.number("1"), .number("-2"), .number("3.5e2"), .bool(true), .null]))
        #expect(members[1].value == .object([JSONMember(key: "c", value: .string("dé\n"))]))
    }

    @Test("decodes surrogate pairs and refuses lone surrogates")
    func surrogates() throws {
        #expect(try JSONParser.parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(#""\ud83d""#) }
    }

    @Test(
        "refuses malformed input with the reason",
        arguments: [
            (#"{"a":1,"a":2}"#, "duplicate key 'a'"),
            (#"{"a":01}"#, "leading zeros"),
            (#"{"a":1,}"#, "expected a string key"),
            (#"{"a":"x"} extra"#, "unexpected text after"),
            ("{\"a\":\"tab\there\"}", "unescaped control character"),
            (#"{"a":tru}"#, "invalid literal"),
            ("", "unexpected end of input"),
        ])
    func refuses(input: String, reason: String) {
        #expect {
            try JSONParser.parse(input)
        } throws: { error in
            (error as? JSONSyntaxError)?.reason.contains(reason) == true
        }
    }

    @Test("refuses JSON nested 10,000 deep without exhausting the stack")
    func deepNesting() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONSyntaxError(offset: 64, reason: "nesting deeper than 64 levels")) {
            try JSONParser.parse(deep)
        }
    }

    @Test("refuses invalid UTF-8 and names the byte")
    func invalidUTF8() {
        let bytes: [UInt8] = Array(#"{"id":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        #expect {
            try bytes.withUnsafeBufferPointer { try JSONParser.parse($0) }
        } throws: { error in
            guard let error = error as? JSONSyntaxError else { return false }
            return error.reason == "invalid UTF-8" && error.offset == 7
        }
    }

    @Test("writes strings with escapes that parse back to the same text")
    func writerEscapes() throws {
        let text = "quote\" backslash\\ newline\n tab\t bell\u{07} é 😀"
        var writer = JSONWriter()
        writer.string(text)
        #expect(try JSONParser.parse(writer.text) == .string(text))
    }
}
