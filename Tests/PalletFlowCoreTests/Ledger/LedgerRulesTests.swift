import Foundation
import PalletFlowCore
import Testing

/// Hand-computed postings for each movement kind (DOMAIN.md, Movements and Accounts).
@Suite("Ledger rules")
struct LedgerRulesTests {
    let shipper = UUID()
    let carrier = UUID()
    let customer = UUID()
    let shipperSite = UUID()
    let customerSite = UUID()
    let epal = UUID()
    let now = Instant.parse("2026-11-20T10:00:00Z")!

    func balance(_ postings: [Posting], _ key: AccountKey) -> Int64 {
        postings.filter { $0.account == key }.reduce(0) { $0 + $1.amount }
    }

    func declaration(_ kind: MovementKind, from: PartyAtSite?, to: PartyAtSite?, _ lines: [MovementLine]) -> MovementDeclaration {
        MovementDeclaration(kind: kind, eventTime: now, from: from, to: to, lines: lines)
    }

    @Test("pickup of 33 loaded with 20 empties exchanged: the carrier owes the shipper 13")
    func pickup() {
        let postings = LedgerRules.postings(for: declaration(
            .pickup, from: PartyAtSite(party: shipper, site: shipperSite), to: PartyAtSite(party: carrier),
            [MovementLine(palletType: epal, quality: .a, quantity: 33, exchangedQuantity: 20)]))
        #expect(balance(postings, .owed(carrier, to: shipper, epal, .a)) == 13)
        #expect(balance(postings, .owed(shipper, to: carrier, epal, .a)) == -13)
        #expect(balance(postings, .holding(shipper, site: shipperSite, epal, .a)) == -13)
        #expect(balance(postings, .holding(carrier, site: nil, epal, .a)) == 13)
        #expect(LedgerRules.isConserved(postings))
    }

    @Test("delivery of 30 with 24 empties back: the consignee owes the carrier 6, with a note for 6")
    func deliveryWithShortfall() {
        let movement = declaration(
            .delivery, from: PartyAtSite(party: carrier), to: PartyAtSite(party: customer, site: customerSite),
            [MovementLine(palletType: epal, quality: .a, quantity: 30, exchangedQuantity: 24)])
        let postings = LedgerRules.postings(for: movement)
        #expect(balance(postings, .owed(customer, to: carrier, epal, .a)) == 6)
        #expect(balance(postings, .holding(customer, site: customerSite, epal, .a)) == 6)
        #expect(balance(postings, .holding(carrier, site: nil, epal, .a)) == -6)
        let notes = LedgerRules.shortfallNotes(for: movement, serial: "BP-1")
        #expect(notes == [PalletNoteTerms(issuer: customer, holder: carrier, palletType: epal, quality: .a, quantity: 6, serial: "BP-1")])
    }

    @Test("empties of lower quality handed back stay separate per quality")
    func exchangeInAnotherQuality() {
        let postings = LedgerRules.postings(for: declaration(
            .delivery, from: PartyAtSite(party: carrier), to: PartyAtSite(party: customer),
            [MovementLine(palletType: epal, quality: .a, quantity: 10, exchangedQuantity: 10, exchangedQuality: .c)]))
        #expect(balance(postings, .owed(customer, to: carrier, epal, .a)) == 10)
        #expect(balance(postings, .owed(customer, to: carrier, epal, .c)) == -10)
        #expect(LedgerRules.isConserved(postings))
    }

    @Test("return of 12 empties reduces the carrier's debt by 12")
    func returnOfEmpties() {
        let postings = LedgerRules.postings(for: declaration(
            .return, from: PartyAtSite(party: carrier), to: PartyAtSite(party: shipper, site: shipperSite),
            [MovementLine(palletType: epal, quality: .a, quantity: 12)]))
        #expect(balance(postings, .owed(carrier, to: shipper, epal, .a)) == -12)
        #expect(balance(postings, .holding(shipper, site: shipperSite, epal, .a)) == 12)
    }

    @Test("transfer between two sites of one party moves holdings only")
    func transferWithinParty() {
        let other = UUID()
        let postings = LedgerRules.postings(for: declaration(
            .transfer, from: PartyAtSite(party: shipper, site: shipperSite), to: PartyAtSite(party: shipper, site: other),
            [MovementLine(palletType: epal, quality: .b, quantity: 7)]))
        #expect(postings.allSatisfy { $0.account.accountClass == .holding })
        #expect(balance(postings, .holding(shipper, site: other, epal, .b)) == 7)
        #expect(balance(postings, .holding(shipper, site: shipperSite, epal, .b)) == -7)
    }

    @Test("purchase enters the pool; scrap and loss leave it; loss with an owner writes the debt off")
    func poolBoundary() {
        let purchase = LedgerRules.postings(for: declaration(
            .purchase, from: nil, to: PartyAtSite(party: shipper, site: shipperSite),
            [MovementLine(palletType: epal, quality: .new, quantity: 100)]))
        #expect(balance(purchase, .boundary(.poolIn, epal, .new)) == -100)
        #expect(balance(purchase, .holding(shipper, site: shipperSite, epal, .new)) == 100)

        let scrap = LedgerRules.postings(for: declaration(
            .scrap, from: PartyAtSite(party: shipper, site: shipperSite), to: nil,
            [MovementLine(palletType: epal, quality: .unusable, quantity: 4)]))
        #expect(balance(scrap, .boundary(.scrapped, epal, .unusable)) == 4)

        let loss = LedgerRules.postings(for: declaration(
            .loss, from: PartyAtSite(party: carrier), to: PartyAtSite(party: shipper),
            [MovementLine(palletType: epal, quality: .a, quantity: 3)]))
        #expect(balance(loss, .boundary(.lost, epal, .a)) == 3)
        #expect(balance(loss, .holding(carrier, site: nil, epal, .a)) == -3)
        #expect(balance(loss, .owed(carrier, to: shipper, epal, .a)) == -3)
        #expect(LedgerRules.isConserved(loss))
    }

    @Test("repair moves pallets from one quality to another at the same site")
    func repair() {
        let postings = LedgerRules.postings(for: declaration(
            .repair, from: PartyAtSite(party: shipper, site: shipperSite), to: nil,
            [MovementLine(palletType: epal, quality: .c, quantity: 9, targetQuality: .a)]))
        #expect(balance(postings, .holding(shipper, site: shipperSite, epal, .c)) == -9)
        #expect(balance(postings, .holding(shipper, site: shipperSite, epal, .a)) == 9)
    }

    @Test("an inventory of 40 against a book of 47 posts an adjustment of -7, never an overwrite")
    func inventory() {
        let account = AccountKey.holding(shipper, site: shipperSite, epal, .a)
        let postings = LedgerRules.postings(for: declaration(
            .inventory, from: PartyAtSite(party: shipper, site: shipperSite), to: nil,
            [MovementLine(palletType: epal, quality: .a, quantity: 40)])) { $0 == account ? 47 : 0 }
        #expect(balance(postings, account) == -7)
        #expect(balance(postings, .boundary(.adjusted, epal, .a)) == 7)
        let unchanged = LedgerRules.postings(for: declaration(
            .inventory, from: PartyAtSite(party: shipper, site: shipperSite), to: nil,
            [MovementLine(palletType: epal, quality: .a, quantity: 47)])) { $0 == account ? 47 : 0 }
        #expect(unchanged.isEmpty)
    }

    @Test("a reversal is the exact negation of the original")
    func reversal() {
        let original = LedgerRules.postings(for: declaration(
            .pickup, from: PartyAtSite(party: shipper), to: PartyAtSite(party: carrier),
            [MovementLine(palletType: epal, quality: .a, quantity: 5, exchangedQuantity: 2)]))
        let reversal = LedgerRules.reversal(of: original)
        var sums: [AccountKey: Int64] = [:]
        for posting in original + reversal { sums[posting.account, default: 0] += posting.amount }
        #expect(sums.values.allSatisfy { $0 == 0 })
    }

    @Test("validation reports every bad field at once")
    func validation() {
        let otherSite = UUID()
        let directory = Directory(
            ecosystem: UUID(),
            members: [Member(id: shipper, organisation: UUID(), name: "S", role: .shipper),
                      Member(id: carrier, organisation: UUID(), name: "C", role: .carrier),
                      Member(id: customer, organisation: UUID(), name: "K", role: .customer)],
            sites: [Site(id: shipperSite, owner: shipper, name: "s"), Site(id: otherSite, owner: customer, name: "k")],
            palletTypes: [PalletType(id: epal, code: "EPAL1", name: "EPAL")])
        let declarer = directory.members[carrier]!
        let bad = MovementDeclaration(
            kind: .pickup, eventTime: Instant(microsecondsSinceEpoch: now.microsecondsSinceEpoch + 86_400_000_000),
            from: PartyAtSite(party: shipper, site: otherSite), to: PartyAtSite(party: UUID()),
            lines: [MovementLine(palletType: epal, quality: .a, quantity: 0),
                    MovementLine(palletType: UUID(), quality: .a, quantity: 1_000_000),
                    MovementLine(palletType: epal, quality: .a, quantity: -3)])
        let fields = Set(LedgerRules.validate(bad, declarer: declarer, directory: directory, now: now).map(\.field))
        #expect(fields.isSuperset(of: ["eventTime", "from.site", "to.party", "lines[0].quantity", "lines[1].quantity",
                                        "lines[1].palletType", "lines[2].quantity"]))
    }

    @Test("the declarer must take part; the counterparty is the other side")
    func declarerAndCounterparty() {
        let movement = declaration(.return, from: PartyAtSite(party: carrier), to: PartyAtSite(party: shipper),
                                   [MovementLine(palletType: epal, quality: .a, quantity: 1)])
        #expect(LedgerRules.counterparty(of: movement, declarer: carrier) == shipper)
        #expect(LedgerRules.counterparty(of: movement, declarer: shipper) == carrier)
        let repair = declaration(.repair, from: PartyAtSite(party: shipper), to: nil,
                                 [MovementLine(palletType: epal, quality: .c, quantity: 1, targetQuality: .b)])
        #expect(LedgerRules.counterparty(of: repair, declarer: shipper) == nil)
    }

    @Test("the lock order compares UUIDs by bytes, the order of their strings")
    func lockOrderMatchesStrings() {
        var generator = SystemRandomNumberGenerator()
        func id() -> UUID {
            // Few distinct bytes, so that keys often share prefixes and every field gets compared.
            let b = (0..<16).map { _ in [0x00, 0x0f, 0xa0, 0xff][Int.random(in: 0..<4, using: &generator)] as UInt8 }
            return UUID(uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
        }
        let ids = (0..<6).map { _ in id() }
        let keys = (0..<300).map { _ in
            AccountKey(AccountClass.allCases.randomElement(using: &generator)!, party: ids.randomElement(using: &generator)!,
                       counterparty: ids.randomElement(using: &generator)!, site: ids.randomElement(using: &generator)!,
                       palletType: ids.randomElement(using: &generator)!,
                       quality: QualityGrade.allCases.randomElement(using: &generator)!)
        }
        func byStrings(_ a: AccountKey, _ b: AccountKey) -> Bool {
            (a.accountClass.rawValue, a.party.uuidString, a.counterparty.uuidString, a.site.uuidString, a.palletType.uuidString,
             a.quality.rawValue)
                < (b.accountClass.rawValue, b.party.uuidString, b.counterparty.uuidString, b.site.uuidString,
                   b.palletType.uuidString, b.quality.rawValue)
        }
        for a in keys.prefix(60) {
            for b in keys { #expect((a < b) == byStrings(a, b)) }
        }
        #expect(keys.sorted() == keys.sorted(by: byStrings))
    }
}
