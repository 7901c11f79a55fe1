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
        let (counts, missingQuantity) = palletCounts(of: event, in: directory, check: &check, base: base)
        let quality = quality(of: event, prefixes: prefixes, check: &check, base: base)
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
        let handover: Handover
        switch readHandover(of: event, step: word, in: directory) {
        case .nothingToPost(let reason): return .success(.nothingToPost(reason))
        case .handover(let read): handover = read
        }

        let kind = movementKind(of: event, step: word, handover: handover)
        let (references, voucher) = references(of: event, prefixes: prefixes, check: &check, base: base)
        let lines = counts.map { MovementLine(palletType: $0.type, quality: quality, quantity: $0.quantity) }
        let declaration = MovementDeclaration(
            kind: kind, eventTime: event.eventTime,
            from: PartyAtSite(party: handover.giver.id, site: handover.giverSite?.id),
            to: PartyAtSite(party: handover.receiver.id, site: handover.receiverSite?.id),
            lines: lines, references: references, note: event.eventID.map { "EPCIS event \($0)" })
        // The ledger's own rules, named by the EPCIS fields the partner sent.
        for error in LedgerRules.validate(declaration, declarer: declarer, directory: directory.directory, now: now) {
            check.add(ledgerPath(error.field, base: base, counts: counts.map(\.field)),
                      "\(error.message) (read as a \(kind.rawValue) from \(handover.giver.name) to \(handover.receiver.name))")
        }
        if !check.errors.isEmpty { return .failure(ValidationFailure(check.errors)) }
        return .success(.movement(declaration, voucher: voucher))
    }

    static func fieldPath(_ name: String, base: String) -> String { base.isEmpty ? name : base + "." + name }

    /// A movement line's count and the EPCIS field it came from.
    typealias PalletCount = (type: UUID, quantity: Int64, field: String)

    /// Pallet lines: class quantities and serialised GRAIs of known pallet types. A class
    /// named without a quantity is kept apart: it posts nothing, and says why.
    static func palletCounts(of event: EPCISEvent, in directory: PalletDirectory, check: inout Validator,
                             base: String) -> (counts: [PalletCount], missingQuantity: [String]) {
        var counts: [PalletCount] = []
        var missingQuantity: [String] = []
        let quantityKeys = event.json["quantityList"] != nil ? "quantityList" : "childQuantityList"
        for (position, element) in event.quantities.enumerated() {
            guard let type = directory.palletType(forClass: element.epcClass) else { continue }
            let field = fieldPath("\(quantityKeys)[\(position)].quantity", base: base)
            guard let quantity = element.quantity else {
                missingQuantity.append(directory.directory.palletTypes[type.id]?.code ?? element.epcClass)
                continue
            }
            guard quantity.rounded() == quantity, quantity >= 1, quantity <= Double(DeclarationLimits.quantityMax) else {
                check.add(field, "must be a whole number of pallets between 1 and \(DeclarationLimits.quantityMax), got \(quantity)")
                continue
            }
            if let uom = element.uom, uom != "H87", uom != "C62", uom != "EA" {
                check.add(fieldPath("\(quantityKeys)[\(position)].uom", base: base),
                          "pallets are counted in pieces (H87, C62 or EA), got \(uom)")
            }
            counts.append((type.id, Int64(quantity), field))
        }
        var serialised: [UUID: Int64] = [:]
        for epc in event.epcs where GS1Key.isSerialisedGRAI(epc) {
            if let type = directory.palletType(forClass: epc) { serialised[type.id, default: 0] += 1 }
        }
        for (type, quantity) in serialised.sorted(by: { $0.key.uuidString < $1.key.uuidString }) {
            counts.append((type, quantity, fieldPath("epcList", base: base)))
        }
        return (counts, missingQuantity)
    }

    /// Block4Log's quality and tradability extensions; a pallet declared not tradable is
    /// unusable, whatever its quality level.
    static func quality(of event: EPCISEvent, prefixes: [String: String], check: inout Validator,
                        base: String) -> QualityGrade {
        var quality = QualityGrade.a
        if let level = event.extensionValue(namespace: b4lNamespace, name: "qualityLevel", prefixes: prefixes) {
            switch level.string {
            case "A": quality = .a
            case "B": quality = .b
            case "C": quality = .c
            default: check.add(fieldPath("b4l:qualityLevel", base: base), "must be \"A\", \"B\" or \"C\"")
            }
        }
        if let tradability = event.extensionValue(namespace: b4lNamespace, name: "tradability", prefixes: prefixes) {
            switch tradability {
            case .bool(false), .string("false"): quality = .unusable
            case .bool(true), .string("true"): break
            default: check.add(fieldPath("b4l:tradability", base: base), "must be true or false")
            }
        }
        return quality
    }

    /// Who hands the pallets over to whom, and at which of their own sites.
    struct Handover {
        var giver: Member
        var receiver: Member
        var giverSite: Site?
        var receiverSite: Site?
    }

    enum HandoverReading {
        case handover(Handover)
        case nothingToPost(String)
    }

    /// A party an event names: none, a member, or someone outside the ecosystem.
    enum Named {
        case none, member(Member), unknown(String)

        var member: Member? {
            if case .member(let member) = self { return member }
            return nil
        }

        init(_ ids: [String], in directory: PalletDirectory) {
            guard let id = ids.first else { self = .none; return }
            guard let member = directory.member(id) else { self = .unknown("party \(id) is not a member of this ecosystem"); return }
            self = .member(member)
        }
    }

    /// At arrival, who carried the pallets hands them to the destination's owner (or the
    /// dock's); at departure, the source's owner (or the dock's) hands them to who carries
    /// them; `accepting` passes them between owners. A party outside the ecosystem makes
    /// the event none of the ledger's business.
    static func readHandover(of event: EPCISEvent, step word: String, in directory: PalletDirectory) -> HandoverReading {
        let sourceOwner = Named(event.sources("owning_party"), in: directory)
        let sourcePossessor = Named(event.sources("possessing_party"), in: directory)
        let destinationOwner = Named(event.destinations("owning_party"), in: directory)
        let destinationPossessor = Named(event.destinations("possessing_party"), in: directory)
        for result in [sourceOwner, sourcePossessor, destinationOwner, destinationPossessor] {
            if case .unknown(let reason) = result { return .nothingToPost(reason) }
        }
        let here = (event.readPoint ?? event.bizLocation).flatMap { directory.site($0) }
        let destinationSite = event.destinations("location").first.flatMap { directory.site($0) }
        let sourceSite = event.sources("location").first.flatMap { directory.site($0) }

        var giver: Member?
        var receiver: Member?
        var giverSite: Site?
        var receiverSite: Site?
        if word == "accepting" {
            giver = sourceOwner.member
            receiver = destinationOwner.member
            giverSite = here ?? sourceSite
            receiverSite = destinationSite ?? here
        } else if arrivalSteps.contains(word) {
            giver = sourcePossessor.member ?? sourceOwner.member
            receiver = destinationOwner.member ?? destinationPossessor.member ?? here.flatMap { directory.directory.members[$0.owner] }
            receiverSite = here ?? destinationSite
            giverSite = sourceSite
        } else {
            giver = sourceOwner.member ?? sourcePossessor.member ?? here.flatMap { directory.directory.members[$0.owner] }
            receiver = destinationPossessor.member ?? destinationOwner.member
            giverSite = here ?? sourceSite
            receiverSite = destinationSite
        }
        guard let giver else { return .nothingToPost("names no party handing the pallets over") }
        guard let receiver else { return .nothingToPost("names no party receiving the pallets") }
        // A site counts only for the party that owns it.
        if giverSite?.owner != giver.id { giverSite = nil }
        if receiverSite?.owner != receiver.id { receiverSite = nil }
        return .handover(Handover(giver: giver, receiver: receiver, giverSite: giverSite, receiverSite: receiverSite))
    }

    /// The ledger's kind: a return whenever the event says so; a carrier bringing pallets
    /// is a delivery, one taking them a pickup; anything else moves pallets as a transfer.
    static func movementKind(of event: EPCISEvent, step word: String, handover: Handover) -> MovementKind {
        let giver = handover.giver
        let receiver = handover.receiver
        let returned = event.disposition == .word("returned") || event.bizTransactions.contains { $0.type == .word("rma") }
        if returned && giver.id != receiver.id { return .return }
        if arrivalSteps.contains(word) && giver.role == .carrier && receiver.role != .carrier { return .delivery }
        if departureSteps.contains(word) && receiver.role == .carrier && giver.role != .carrier { return .pickup }
        return .transfer
    }

    /// The delivery note, order and CMR the event cites (the first of each), and the pallet
    /// note's GDTI when a voucher came with the pallets.
    static func references(of event: EPCISEvent, prefixes: [String: String], check: inout Validator,
                           base: String) -> (references: MovementReferences, voucher: String?) {
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
                    check.add(fieldPath("bizTransactionList[\(position)].bizTransaction", base: base),
                              "a voucher must be a GDTI (urn:epc:id:gdti:... or https://id.gs1.org/253/...)")
                    continue
                }
                voucher = key.value
                references.palletNote = key.value
            default: break
            }
        }
        return (references, voucher)
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
