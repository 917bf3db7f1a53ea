/// A resource an orchestrator knows to be running, for seeding baselines: one line of the
/// `seed-baseline --running FILE` input,
/// `{"resource":{"type":..,"id":..,"owner":..},"footprint":{..},"attributes":{..}}`.
public struct RunningResource: Sendable, Hashable {
    /// The resource.
    public var resource: ResourceID
    /// Its owner.
    public var owner: String
    /// Its footprint now.
    public var footprint: Meters
    /// Its attributes.
    public var attributes: Attributes

    /// Describes a running resource.
    public init(resource: ResourceID, owner: String, footprint: Meters, attributes: Attributes = [:]) {
        self.resource = resource
        self.owner = owner
        self.footprint = footprint
        self.attributes = attributes
    }

    /// Decodes one line of the running-resources NDJSON; `footprint` is required (it may be `{}`).
    public static func decode(_ line: String) throws(LedgerError) -> RunningResource {
        let value: JSONValue
        do { value = try JSONParser.parse(line) } catch {
            throw .invalidJSON(reason: "\(error.reason) at byte \(error.offset + 1)")
        }
        guard case .object(let members) = value else {
            throw .invalidJSON(reason: "expected an object, got \(value.typeName)")
        }
        var resource: [JSONMember]?, footprint: Meters?, attributes = Attributes()
        for member in members {
            switch member.key {
            case "resource":
                guard case .object(let inner) = member.value else {
                    throw .invalidField(field: "resource", reason: "must be an object")
                }
                resource = inner
            case "footprint": footprint = try EventJSON.meters(member.value, field: "footprint")
            case "attributes": attributes = try EventJSON.stringPairs(member.value, field: "attributes")
            default:
                throw .invalidField(
                    field: member.key,
                    reason: "unknown field (a running resource has resource, footprint and attributes)")
            }
        }
        guard let resource else { throw .invalidField(field: "resource", reason: "is required") }
        var fields: [String: String] = [:]
        for member in resource {
            guard ["type", "id", "owner"].contains(member.key) else {
                throw .invalidField(
                    field: "resource.\(member.key)", reason: "unknown field (a resource has type, id and owner)")
            }
            fields[member.key] = try EventJSON.string(member.value, field: "resource.\(member.key)")
        }
        guard let type = fields["type"] else { throw .invalidField(field: "resource.type", reason: "is required") }
        guard let id = fields["id"] else { throw .invalidField(field: "resource.id", reason: "is required") }
        guard let owner = fields["owner"] else { throw .invalidField(field: "resource.owner", reason: "is required") }
        guard let footprint else { throw .invalidField(field: "footprint", reason: "is required (it may be {})") }
        return RunningResource(
            resource: ResourceID(type: type, id: id), owner: owner, footprint: footprint, attributes: attributes)
    }
}
