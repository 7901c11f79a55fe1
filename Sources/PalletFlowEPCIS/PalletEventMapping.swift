import Foundation
import PalletFlowCore

/// What a captured event means for the pallet ledger (GS1 Germany's Block4Log pallet
/// exchange profile, as docs/epcis.md explains).
public enum PalletEventMeaning: Sendable {
    /// A handover to post: the movement, and the pallet note's GDTI if a voucher came with it.
    case movement(MovementDeclaration, voucher: String?)
    /// Valid EPCIS that moves no pallet of this ecosystem: stored and queryable, posts nothing.
    case nothingToPost(String)
}

public enum PalletEventMapping {
    public static let b4lNamespace = "https://epcis.b4l.com/"
    public static let voucherType = "https://epcis.b4l.com/btt/voucher"

    static let arrivalSteps: Set<String> = ["arriving", "receiving", "unloading"]
    static let departureSteps: Set<String> = ["departing", "shipping", "loading"]

    /// Members an event names: its source and destination parties, and the owners of its
    /// read point, business location and source/destination locations.
    public static func parties(of event: EPCISEvent, in directory: PalletDirectory) -> Set<UUID> {
        var result = Set<UUID>()
        for entry in event.sources + event.destinations {
            if entry.type == .word("location") {
                if let site = directory.site(entry.id) { result.insert(site.owner) }
            } else if let member = directory.member(entry.id) {
                result.insert(member.id)
            }
        }
        for location in [event.readPoint, event.bizLocation].compactMap({ $0 }) {
            if let site = directory.site(location) { result.insert(site.owner) }
        }
        return result
    }

    /// Reads an event's pallet meaning. Field errors are the event's EPCIS fields that
    /// cannot be posted as sent (a fractional pallet count, an unknown quality level) or
    /// that break a ledger rule; their paths start with `path`.
    public static func meaning(of event: EPCISEvent, prefixes: [String: String], directory: PalletDirectory,
                               declarer: Member, now: Instant, path base: String) -> Result<PalletEventMeaning, ValidationFailure> {
        var check = Validator()
        func path(_ name: String) -> String { base.isEmpty ? name : base + "." + name }

        // Pallet lines: class quantities and serialised GRAIs of known pallet types.
        var counts: [(type: UUID, quantity: Int64, field: String)] = []
        var missingQuantity: [String] = []
        let quantityKeys = event.json["quantityList"] != nil ? "quantityList" : "childQuantityList"
        for (position, element) in event.quantities.enumerated() {
            guard let type = directory.palletType(forClass: element.epcClass) else { continue }
            let field = path("\(quantityKeys)[\(position)].quantity")
            guard let quantity = element.quantity else {
                missingQuantity.append(directory.directory.palletTypes[type.id]?.code ?? element.epcClass)
                continue
            }
            guard quantity.rounded() == quantity, quantity >= 1, quantity <= Double(DeclarationLimits.quantityMax) else {
                check.add(field, "must be a whole number of pallets between 1 and \(DeclarationLimits.quantityMax), got \(quantity)")
                continue
            }
            if let uom = element.uom, uom != "H87", uom != "C62", uom != "EA" {
                check.add(path("\(quantityKeys)[\(position)].uom"), "pallets are counted in pieces (H87, C62 or EA), got \(uom)")
            }
            counts.append((type.id, Int64(quantity), field))
        }
        var serialised: [UUID: Int64] = [:]
        for epc in event.epcs where GS1Key.isSerialisedGRAI(epc) {
            if let type = directory.palletType(forClass: epc) { serialised[type.id, default: 0] += 1 }
        }
        for (type, quantity) in serialised.sorted(by: { $0.key.uuidString < $1.key.uuidString }) {
            counts.append((type, quantity, path("epcList")))
        }

        // Quality and tradability extensions.
        var quality = QualityGrade.a
        if let level = event.extensionValue(namespace: b4lNamespace, name: "qualityLevel", prefixes: prefixes) {
            switch level.string {
            case "A": quality = .a
            case "B": quality = .b
            case "C": quality = .c
            default: check.add(path("b4l:qualityLevel"), "must be \"A\", \"B\" or \"C\"")
            }
        }
        if let tradability = event.extensionValue(namespace: b4lNamespace, name: "tradability", prefixes: prefixes) {
            switch tradability {
            case .bool(false), .string("false"): quality = .unusable
            case .bool(true), .string("true"): break
            default: check.add(path("b4l:tradability"), "must be true or false")
            }
        }
        if !check.errors.isEmpty { return .failure(ValidationFailure(check.errors)) }

        if counts.isEmpty {
            if !missingQuantity.isEmpty {
                return .success(.nothingToPost("names \(missingQuantity.joined(separator: ", ")) without a quantity"))
            }
            return .success(.nothingToPost("concerns no pallet type of this ecosystem"))
        }
        guard event.type == "ObjectEvent", event.action == "OBSERVE" else {
            return .success(.nothingToPost("a \(event.type) with action \(event.action ?? "none") records no pallet handover; only ObjectEvent OBSERVE does"))
        }
        guard let step = event.bizStep, case .word(let word) = step,
              arrivalSteps.contains(word) || departureSteps.contains(word) || word == "accepting"
        else {
            return .success(.nothingToPost("bizStep \(event.bizStep?.text ?? "(none)") moves no pallets between parties"))
        }

        // Who gives, who receives, where.
        enum Named { case none, member(Member), unknown(String) }
        func member(_ ids: [String]) -> Named {
            guard let id = ids.first else { return .none }
            guard let member = directory.member(id) else { return .unknown("party \(id) is not a member of this ecosystem") }
            return .member(member)
        }
        let sourceOwner = member(event.sources("owning_party"))
        let sourcePossessor = member(event.sources("possessing_party"))
        let destinationOwner = member(event.destinations("owning_party"))
        let destinationPossessor = member(event.destinations("possessing_party"))
        for result in [sourceOwner, sourcePossessor, destinationOwner, destinationPossessor] {
            if case .unknown(let reason) = result { return .success(.nothingToPost(reason)) }
        }
        func value(_ named: Named) -> Member? {
            if case .member(let member) = named { return member }
            return nil
        }
        let here = (event.readPoint ?? event.bizLocation).flatMap { directory.site($0) }
        let destinationSite = event.destinations("location").first.flatMap { directory.site($0) }
        let sourceSite = event.sources("location").first.flatMap { directory.site($0) }

        var giver: Member?
        var receiver: Member?
        var giverSite: Site?
        var receiverSite: Site?
        let arriving = arrivalSteps.contains(word)
        if word == "accepting" {
            giver = value(sourceOwner)
            receiver = value(destinationOwner)
            giverSite = here ?? sourceSite
            receiverSite = destinationSite ?? here
        } else if arriving {
            giver = value(sourcePossessor) ?? value(sourceOwner)
            receiver = value(destinationOwner) ?? value(destinationPossessor) ?? here.flatMap { directory.directory.members[$0.owner] }
            receiverSite = here ?? destinationSite
            giverSite = sourceSite
        } else {
            giver = value(sourceOwner) ?? value(sourcePossessor) ?? here.flatMap { directory.directory.members[$0.owner] }
            receiver = value(destinationPossessor) ?? value(destinationOwner)
            giverSite = here ?? sourceSite
            receiverSite = destinationSite
        }
        guard let giver else { return .success(.nothingToPost("names no party handing the pallets over")) }
        guard let receiver else { return .success(.nothingToPost("names no party receiving the pallets")) }
        if giverSite?.owner != giver.id { giverSite = nil }
        if receiverSite?.owner != receiver.id { receiverSite = nil }

        let returned = event.disposition == .word("returned") || event.bizTransactions.contains { $0.type == .word("rma") }
        let kind: MovementKind
        if returned && giver.id != receiver.id {
            kind = .return
        } else if arriving && giver.role == .carrier && receiver.role != .carrier {
            kind = .delivery
        } else if departureSteps.contains(word) && receiver.role == .carrier && giver.role != .carrier {
            kind = .pickup
        } else {
            kind = .transfer
        }

        var references = MovementReferences()
        var voucher: String?
        for transaction in event.bizTransactions {
            switch transaction.type {
            case .word("po"): references.order = references.order ?? transaction.value
            case .word("desadv"): references.deliveryNote = references.deliveryNote ?? transaction.value
            case .word("bol"): references.cmr = references.cmr ?? transaction.value
            case .uri(let uri) where uri == voucherType || uri == (prefixes["b4l"].map { $0 + "btt/voucher" } ?? voucherType):
                guard let key = GS1Key.document(transaction.value) else {
                    let position = event.bizTransactions.firstIndex(of: transaction) ?? 0
                    check.add(path("bizTransactionList[\(position)].bizTransaction"),
                              "a voucher must be a GDTI (urn:epc:id:gdti:... or https://id.gs1.org/253/...)")
                    continue
                }
                voucher = key.value
                references.palletNote = key.value
            default: break
            }
        }
        let lines = counts.map { MovementLine(palletType: $0.type, quality: quality, quantity: $0.quantity) }
        let declaration = MovementDeclaration(
            kind: kind, eventTime: event.eventTime,
            from: PartyAtSite(party: giver.id, site: giverSite?.id), to: PartyAtSite(party: receiver.id, site: receiverSite?.id),
            lines: lines, references: references, note: event.eventID.map { "EPCIS event \($0)" })
        for error in LedgerRules.validate(declaration, declarer: declarer, directory: directory.directory, now: now) {
            check.add(ledgerPath(error.field, base: base, counts: counts.map(\.field)),
                      "\(error.message) (read as a \(kind.rawValue) from \(giver.name) to \(receiver.name))")
        }
        if !check.errors.isEmpty { return .failure(ValidationFailure(check.errors)) }
        return .success(.movement(declaration, voucher: voucher))
    }

    /// The EPCIS field behind a ledger rule's field.
    static func ledgerPath(_ field: String, base: String, counts: [String]) -> String {
        func path(_ name: String) -> String { base.isEmpty ? name : base + "." + name }
        if field.hasPrefix("lines["), let close = field.firstIndex(of: "]"),
           let index = Int(field[field.index(field.startIndex, offsetBy: 6)..<close]), index < counts.count {
            return counts[index]
        }
        if field.hasPrefix("from") { return path("sourceList") }
        if field.hasPrefix("to") { return path("destinationList") }
        if field == "eventTime" { return path("eventTime") }
        return base.isEmpty ? "event" : base
    }
}
