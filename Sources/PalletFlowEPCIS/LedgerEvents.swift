import Foundation
import PalletFlowCore

/// A movement declared through the plain API, as the query interface shows it: an
/// ObjectEvent OBSERVE in the pallet exchange profile. A reversal shows as the error
/// declaration of the movement it cancels, pointing at the correction if there is one.
public struct LedgerEventFacts: Sendable {
    public var movementID: UUID
    public var declaration: MovementDeclaration
    public var recordTime: Instant
    /// Set on a reversal: the movement it retracts.
    public var retracts: UUID?
    public var correction: UUID?

    public init(movementID: UUID, declaration: MovementDeclaration, recordTime: Instant, retracts: UUID? = nil,
                correction: UUID? = nil) {
        self.movementID = movementID
        self.declaration = declaration
        self.recordTime = recordTime
        self.retracts = retracts
        self.correction = correction
    }

    public var eventID: String { "urn:uuid:" + (retracts ?? movementID).uuidString.lowercased() }
}

public enum LedgerEvents {
    public static let palletflowNamespace = "https://palletflow.dev/epcis/"

    /// The bizStep, disposition and parties a movement kind is shown with; the capture
    /// mapping reads them back as the same kind.
    public static func bizStep(_ kind: MovementKind) -> String {
        switch kind {
        case .pickup, .transfer: "departing"
        case .delivery, .return: "arriving"
        case .purchase: "commissioning"
        case .repair: "repairing"
        case .scrap: "destroying"
        case .loss: "removing"
        case .inventory: "cycle_counting"
        }
    }

    public static func disposition(_ kind: MovementKind) -> String? {
        switch kind {
        case .return: "returned"
        case .scrap: "destroyed"
        case .loss: "unknown"
        case .pickup, .transfer: "in_transit"
        default: nil
        }
    }

    public static func render(_ facts: LedgerEventFacts, directory: PalletDirectory) -> [String: JSONValue] {
        let declaration = facts.declaration
        let kind = declaration.kind
        var event: [String: JSONValue] = [
            "type": .string("ObjectEvent"),
            "eventID": .string(facts.eventID),
            "action": .string("OBSERVE"),
            "bizStep": .string(bizStep(kind)),
            "eventTime": .string(declaration.eventTime.rfc3339(keepingOffset: true)),
            "eventTimeZoneOffset": .string(offsetText(declaration.eventTime.offsetMinutes ?? 0)),
            "recordTime": .string(facts.recordTime.rfc3339(keepingOffset: false)),
            "palletflow:movementKind": .string(kind.rawValue),
        ]
        if let disposition = disposition(kind) { event["disposition"] = .string(disposition) }
        renderParties(of: declaration, into: &event, directory: directory)
        renderLines(of: declaration, into: &event, directory: directory)
        renderReferences(declaration.references, into: &event)
        if facts.retracts != nil { event["errorDeclaration"] = errorDeclaration(of: facts) }
        return event
    }

    /// Sources, destinations and read point as the capture mapping reads them back: the
    /// side holding the pallets is the possessing party, the side whose pallets they are
    /// the owning party, and the read point is where the pallets were seen.
    static func renderParties(of declaration: MovementDeclaration, into event: inout [String: JSONValue],
                              directory: PalletDirectory) {
        var sources: [JSONValue] = []
        var destinations: [JSONValue] = []
        func entry(_ type: String, _ key: String, _ id: String) -> JSONValue {
            .object(["type": .string(type), key: .string(id)])
        }
        let from = declaration.from
        let to = declaration.to
        var readPoint: UUID?
        switch declaration.kind {
        case .pickup:
            if let from { sources.append(entry("owning_party", "source", directory.partyURI(from.party))) }
            if let to { destinations.append(entry("possessing_party", "destination", directory.partyURI(to.party))) }
            readPoint = from?.site
        case .delivery, .return:
            if let from { sources.append(entry("possessing_party", "source", directory.partyURI(from.party))) }
            if let to { destinations.append(entry("owning_party", "destination", directory.partyURI(to.party))) }
            readPoint = to?.site
        case .transfer:
            if let from { sources.append(entry("owning_party", "source", directory.partyURI(from.party))) }
            if let to {
                destinations.append(entry("owning_party", "destination", directory.partyURI(to.party)))
                if let site = to.site { destinations.append(entry("location", "destination", directory.siteURI(site))) }
            }
            readPoint = from?.site
        case .purchase:
            if let to { destinations.append(entry("owning_party", "destination", directory.partyURI(to.party))) }
            readPoint = to?.site
        case .loss:
            if let from { sources.append(entry("possessing_party", "source", directory.partyURI(from.party))) }
            if let to { destinations.append(entry("owning_party", "destination", directory.partyURI(to.party))) }
            readPoint = from?.site
        case .repair, .scrap, .inventory:
            if let from { sources.append(entry("possessing_party", "source", directory.partyURI(from.party))) }
            readPoint = from?.site
        }
        if !sources.isEmpty { event["sourceList"] = .array(sources) }
        if !destinations.isEmpty { event["destinationList"] = .array(destinations) }
        if let readPoint { event["readPoint"] = .object(["id": .string(directory.siteURI(readPoint))]) }
    }

    /// One quantity per pallet type; qualities go to the b4l extension when there is
    /// one quality, and to palletflow:lines always.
    static func renderLines(of declaration: MovementDeclaration, into event: inout [String: JSONValue],
                            directory: PalletDirectory) {
        var perType: [UUID: Int64] = [:]
        var order: [UUID] = []
        for line in declaration.lines {
            if perType[line.palletType] == nil { order.append(line.palletType) }
            perType[line.palletType, default: 0] += line.quantity
        }
        event["quantityList"] = .array(order.map {
            .object(["epcClass": .string(directory.palletClassURI($0)), "quantity": .number(Double(perType[$0]!))])
        })
        let qualities = Set(declaration.lines.map(\.quality))
        if qualities.count == 1, let quality = qualities.first {
            switch quality {
            case .a, .b, .c: event["b4l:qualityLevel"] = .string(quality.rawValue)
            case .unusable: event["b4l:tradability"] = .bool(false)
            case .new: break
            }
        }
        event["palletflow:lines"] = .array(declaration.lines.map { line in
            var fields: [String: JSONValue] = [
                "epcClass": .string(directory.palletClassURI(line.palletType)),
                "quality": .string(line.quality.rawValue),
                "quantity": .number(Double(line.quantity)),
            ]
            if line.exchangedQuantity > 0 {
                fields["exchangedQuantity"] = .number(Double(line.exchangedQuantity))
                fields["exchangedQuality"] = .string(line.exchangedQuality.rawValue)
            }
            if let target = line.targetQuality { fields["targetQuality"] = .string(target.rawValue) }
            return .object(fields)
        })
    }

    /// Order, delivery note and CMR as CBV business transactions; a pallet note as the
    /// Block4Log voucher, a GDTI when it reads as one.
    static func renderReferences(_ references: MovementReferences, into event: inout [String: JSONValue]) {
        var transactions: [JSONValue] = []
        if let order = references.order { transactions.append(.object(["type": .string("po"), "bizTransaction": .string(uriOrURN(order, "po"))])) }
        if let note = references.deliveryNote {
            transactions.append(.object(["type": .string("desadv"), "bizTransaction": .string(uriOrURN(note, "desadv"))]))
        }
        if let cmr = references.cmr { transactions.append(.object(["type": .string("bol"), "bizTransaction": .string(uriOrURN(cmr, "bol"))])) }
        if let note = references.palletNote {
            let value = GS1Key.document(note)?.urn() ?? (note.count >= 13 && GS1Key.checked(note.prefix(13))
                ? GS1Key(kind: .document, value: note).urn() : uriOrURN(note, "voucher"))
            transactions.append(.object(["type": .string(PalletEventMapping.voucherType), "bizTransaction": .string(value)]))
        }
        if !transactions.isEmpty { event["bizTransactionList"] = .array(transactions) }
    }

    /// A reversal is the error declaration of the movement it cancels, naming the
    /// corrected movement as its corrective event.
    static func errorDeclaration(of facts: LedgerEventFacts) -> JSONValue {
        var declarationFields: [String: JSONValue] = [
            "declarationTime": .string(facts.recordTime.rfc3339(keepingOffset: false)),
            "reason": .string("incorrect_data"),
        ]
        if let correction = facts.correction {
            declarationFields["correctiveEventIDs"] = .array([.string("urn:uuid:" + correction.uuidString.lowercased())])
        }
        return .object(declarationFields)
    }


    /// A free-text reference as a URI, as bizTransaction requires.
    static func uriOrURN(_ text: String, _ type: String) -> String {
        if CBV.isURI(text) { return text }
        let encoded = text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? text
        return "urn:palletflow:\(type):\(encoded)"
    }

    public static func offsetText(_ minutes: Int) -> String {
        let sign = minutes < 0 ? "-" : "+"
        let value = abs(minutes)
        return sign + String(format: "%02d:%02d", value / 60, value % 60)
    }
}
