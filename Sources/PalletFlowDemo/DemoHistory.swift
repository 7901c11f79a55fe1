import Foundation
import PalletFlowCore
import PalletFlowStore

/// A deterministic generator (SplitMix64): the same seed gives the same demo year.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A year of plausible pallet traffic for the demo: carriers pick up loaded pallets at the
/// dairy's sites with partial exchange, deliver to consignees and warehouses (some short,
/// with pallet notes), bring empties back with a delay, lose a few; suppliers deliver
/// on pallets; a few declarations are contested. Busy carriers carry more (Zipf-like).
enum DemoHistory {
    static func seed(_ store: Store, ecosystem: UUID, days: Int = 365, now: Date) async throws {
        let directory = try await store.directory(ecosystem: ecosystem)
        guard var year = DemoYear(directory: directory, days: days, now: now) else { return }
        year.buyOpeningStock()
        year.trade()
        try await store.ensureLedgerPartitions(from: Instant(microsecondsSinceEpoch: year.start), through: Instant(now))
        for chunk in stride(from: 0, to: year.movements.count, by: 400) {
            _ = try await store.post(ecosystem: ecosystem, by: year.shipper.id,
                                     Array(year.movements[chunk..<min(chunk + 400, year.movements.count)]), idempotency: nil)
        }
        try await contestRecentDeliveries(year.movements, store: store, ecosystem: ecosystem, shipper: year.shipper.id)
        try await redeemOlderNotes(store: store, ecosystem: ecosystem)
    }

    /// A few recent deliveries contested by the consignee, one already resolved.
    static func contestRecentDeliveries(_ movements: [MovementToPost], store: Store, ecosystem: UUID,
                                        shipper: UUID) async throws {
        let contestable = movements.filter {
            $0.declaration.kind == .delivery && !$0.confirmed
                && ($0.declaration.lines.first.map { $0.quantity - $0.exchangedQuantity >= 4 } ?? false)
        }.prefix(4)
        for (index, movement) in contestable.enumerated() {
            guard let consignee = movement.counterparty, let line = movement.declaration.lines.first else { continue }
            _ = try await store.contest(
                ecosystem: ecosystem, movement: movement.id, by: consignee,
                counterLines: [CounterLine(lineNo: 0, quantity: line.quantity,
                                           exchangedQuantity: min(line.quantity, line.exchangedQuantity + 3))],
                evidence: Evidence(sha256: String(repeating: "0\(index)", count: 32), url: "https://example.org/dock-photo-\(index).jpg"),
                note: "We handed back 3 more empties than declared")
            if index == 0 {
                _ = try await store.resolve(ecosystem: ecosystem, movement: movement.id, by: shipper, resolution: .agreed,
                                            agreedLines: [CounterLine(lineNo: 0, quantity: line.quantity,
                                                                      exchangedQuantity: min(line.quantity, line.exchangedQuantity + 1))],
                                            note: "Agreed on one extra pallet after checking the CMR")
            }
        }
    }

    /// Older notes were partly redeemed by returns.
    static func redeemOlderNotes(store: Store, ecosystem: UUID) async throws {
        for note in try await store.palletNotes(ecosystem: ecosystem, party: nil).prefix(40) {
            _ = try await store.redeemNote(ecosystem: ecosystem, id: note.id, quantity: max(1, note.quantity / 2),
                                           movement: nil, by: note.holder)
        }
    }
}

/// The demo year being written, movement by movement. Every random draw comes from one
/// seeded generator in a fixed order: change the order and the demo's figures change.
struct DemoYear {
    let directory: Directory
    let shipper: Member
    let epal: PalletType
    let half: PalletType
    let box: PalletType
    let carriers: [Member]
    let consignees: [Member]
    let suppliers: [Member]
    let shipperSites: [UUID]
    let days: Int
    static let dayMicros: Int64 = 86_400_000_000
    let start: Int64
    let end: Int64
    /// Movements of the last two weeks are still waiting for their counterparty.
    let pendingFrom: Int64
    var random = SeededGenerator(seed: 2026)
    var movements: [MovementToPost] = []
    var owedByCarrier: [UUID: [UUID: Int64]] = [:]

    init?(directory: Directory, days: Int, now: Date) {
        let members = directory.members.values.sorted { $0.name < $1.name }
        guard let shipper = members.first(where: { $0.role == .shipper }),
              let epal = directory.palletType("EPAL1"), let half = directory.palletType("EPAL6"),
              let box = directory.palletType("GITTERBOX")
        else { return nil }
        self.directory = directory
        self.shipper = shipper
        self.epal = epal
        self.half = half
        self.box = box
        carriers = members.filter { $0.role == .carrier }
        consignees = members.filter { $0.role == .customer || $0.role == .warehouse }
        suppliers = members.filter { $0.role == .supplier }
        self.days = days
        end = Instant(now).microsecondsSinceEpoch
        start = end - Int64(days) * Self.dayMicros
        pendingFrom = end - 14 * Self.dayMicros
        shipperSites = Self.sites(of: shipper, in: directory)
    }

    func sites(of member: Member) -> [UUID] { Self.sites(of: member, in: directory) }

    /// Sorted, so the seeded draws pick the same sites each time.
    static func sites(of member: Member, in directory: Directory) -> [UUID] {
        directory.sites.values.filter { $0.owner == member.id }.map(\.id).sorted { $0.uuidString < $1.uuidString }
    }

    /// Declared some hours after the fact, as partners do, with the pallet notes of a short delivery.
    mutating func post(_ kind: MovementKind, at time: Int64, from: PartyAtSite?, to: PartyAtSite?, lines: [MovementLine],
                       declarer: UUID, note: String? = nil, cmr: String? = nil, notes: Bool = false) {
        let lateness = Int64.random(in: 600...(kind == .return ? 172_800 : 43_200), using: &random) * 1_000_000
        let eventTime = Instant(microsecondsSinceEpoch: time, offsetMinutes: 60)
        let declaration = MovementDeclaration(kind: kind, eventTime: eventTime, from: from, to: to, lines: lines,
                                              references: MovementReferences(cmr: cmr), note: note)
        let counterparty = LedgerRules.counterparty(of: declaration, declarer: declarer)
        var issued: [IssuedNote] = []
        if notes {
            let issue = String(eventTime.description.prefix(10))
            let due = String(Instant(microsecondsSinceEpoch: time + 30 * Self.dayMicros, offsetMinutes: 60).description.prefix(10))
            issued = LedgerRules.shortfallNotes(for: declaration, serial: nil).map {
                IssuedNote(id: newID(), terms: $0, issueDate: issue, dueDate: due)
            }
        }
        let recordTime = Instant(microsecondsSinceEpoch: min(time + lateness, end))
        movements.append(MovementToPost(
            // Recorded back then: the id carries that instant, so the history fills the
            // monthly partitions it would have filled (`palletflow archive --list`).
            id: newID(at: recordTime.date), declaration: declaration, declarer: declarer, counterparty: counterparty,
            recordTime: recordTime, source: "demo",
            postings: LedgerRules.postings(for: declaration), notes: issued,
            confirmed: counterparty == nil || time < pendingFrom))
    }

    /// Opening stock a year ago: the dairy bought its pool.
    mutating func buyOpeningStock() {
        post(.purchase, at: start, from: nil, to: PartyAtSite(party: shipper.id, site: shipperSites.first),
             lines: [MovementLine(palletType: epal.id, quality: .new, quantity: 6_000),
                     MovementLine(palletType: half.id, quality: .new, quantity: 1_500),
                     MovementLine(palletType: box.id, quality: .new, quantity: 300)],
             declarer: shipper.id, note: "Opening stock")
    }

    /// Working days only: the carriers' trips, a supplier's delivery once a week, and once
    /// a month a loss and a scrapping.
    mutating func trade() {
        for day in 0..<days {
            let dayStart = start + Int64(day) * Self.dayMicros
            let weekday = (day + 3) % 7
            guard weekday < 5 else { continue }
            for (rank, carrier) in carriers.enumerated() {
                driveDay(of: carrier, rank: rank, day: day, dayStart: dayStart, weekday: weekday)
            }
            if weekday == 1, let supplier = suppliers.randomElement(using: &random) {
                deliverPackaging(from: supplier, dayStart: dayStart)
            }
            if day % 30 == 17, let carrier = carriers.randomElement(using: &random) {
                loseAndScrap(carrier: carrier, dayStart: dayStart)
            }
        }
    }

    /// A carrier's trip: a pickup at the dairy with part of the empties exchanged, the
    /// delivery that afternoon, every other week the empties back, now and then other pallets.
    mutating func driveDay(of carrier: Member, rank: Int, day: Int, dayStart: Int64, weekday: Int) {
        // Zipf-like: the first carriers are much busier than the last.
        let trips = Double(3) / Double(rank + 1)
        guard Double.random(in: 0..<1, using: &random) < min(1, trips) else { return }
        let morning = dayStart + Int64.random(in: 5...9, using: &random) * 3_600_000_000
        let loaded = Int64.random(in: 18...33, using: &random)
        let exchangeRate = Double.random(in: 0.7...1.0, using: &random)
        let exchanged = Int64(Double(loaded) * exchangeRate)
        let site = shipperSites.randomElement(using: &random)
        post(.pickup, at: morning, from: PartyAtSite(party: shipper.id, site: site),
             to: PartyAtSite(party: carrier.id),
             lines: [MovementLine(palletType: epal.id, quality: .a, quantity: loaded, exchangedQuantity: exchanged,
                                  exchangedQuality: .a)],
             declarer: carrier.id, cmr: "CMR-\(day)-\(rank)")
        owedByCarrier[carrier.id, default: [:]][epal.id, default: 0] += loaded - exchanged
        deliver(loaded, by: carrier, at: morning + 5 * 3_600_000_000)
        if weekday == 4, (day / 7 + rank) % 2 == 0 {
            bringEmptiesBack(carrier: carrier, rank: rank, at: morning + 8 * 3_600_000_000)
        }
        if Double.random(in: 0..<1, using: &random) < 0.15 {
            pickUpHalvesAndBoxes(carrier: carrier, site: site, at: morning + 1_800_000_000)
        }
    }

    /// Delivery the same afternoon; sometimes short of empties.
    mutating func deliver(_ loaded: Int64, by carrier: Member, at time: Int64) {
        let consignee = consignees[Int.random(in: 0..<consignees.count, using: &random)]
        let received = Double.random(in: 0..<1, using: &random) < 0.7
            ? loaded : Int64(Double(loaded) * Double.random(in: 0.5...0.95, using: &random))
        let consigneeSite = sites(of: consignee).randomElement(using: &random)
        let notes = received < loaded && Bool.random(using: &random)
        post(.delivery, at: time, from: PartyAtSite(party: carrier.id),
             to: PartyAtSite(party: consignee.id, site: consigneeSite),
             lines: [MovementLine(palletType: epal.id, quality: .a, quantity: loaded, exchangedQuantity: received)],
             declarer: carrier.id, notes: notes)
    }

    /// Empties go back to the dairy every week or so, short of a little.
    mutating func bringEmptiesBack(carrier: Member, rank: Int, at time: Int64) {
        guard let owed = owedByCarrier[carrier.id] else { return }
        var lines: [MovementLine] = []
        for type in [epal.id, half.id, box.id] {
            guard let due = owed[type], due > 3 else { continue }
            // The last carriers are the careless ones: a good part of their pallets never comes back.
            let share = rank >= carriers.count - 3 ? 0.4...0.7 : 0.6...0.85
            let returned = Int64(Double(due) * Double.random(in: share, using: &random))
            guard returned > 0 else { continue }
            lines.append(MovementLine(palletType: type, quality: .a, quantity: returned))
            owedByCarrier[carrier.id]![type] = due - returned
        }
        if !lines.isEmpty {
            post(.return, at: time, from: PartyAtSite(party: carrier.id),
                 to: PartyAtSite(party: shipper.id, site: shipperSites.first), lines: lines, declarer: carrier.id)
        }
    }

    /// Box pallets and half pallets now and then.
    mutating func pickUpHalvesAndBoxes(carrier: Member, site: UUID?, at time: Int64) {
        let halves = Int64.random(in: 10...40, using: &random)
        let boxes = Int64.random(in: 1...6, using: &random)
        post(.pickup, at: time, from: PartyAtSite(party: shipper.id, site: site),
             to: PartyAtSite(party: carrier.id),
             lines: [MovementLine(palletType: half.id, quality: .a, quantity: halves),
                     MovementLine(palletType: box.id, quality: .a, quantity: boxes)],
             declarer: carrier.id)
        owedByCarrier[carrier.id, default: [:]][half.id, default: 0] += halves
        owedByCarrier[carrier.id, default: [:]][box.id, default: 0] += boxes
    }

    /// Suppliers deliver packaging on pallets; the dairy keeps them.
    mutating func deliverPackaging(from supplier: Member, dayStart: Int64) {
        let quantity = Int64.random(in: 6...20, using: &random)
        post(.transfer, at: dayStart + 10 * 3_600_000_000,
             from: PartyAtSite(party: supplier.id, site: sites(of: supplier).first),
             to: PartyAtSite(party: shipper.id, site: shipperSites.last),
             lines: [MovementLine(palletType: epal.id, quality: .b, quantity: quantity)],
             declarer: supplier.id)
    }

    /// Once a month a carrier declares pallets lost, and the dairy scraps broken ones.
    mutating func loseAndScrap(carrier: Member, dayStart: Int64) {
        let lost = Int64.random(in: 2...9, using: &random)
        post(.loss, at: dayStart + 15 * 3_600_000_000, from: PartyAtSite(party: carrier.id),
             to: PartyAtSite(party: shipper.id),
             lines: [MovementLine(palletType: epal.id, quality: .a, quantity: lost)],
             declarer: carrier.id, note: "Pallets not recovered from the consignee")
        let broken = Int64.random(in: 5...15, using: &random)
        post(.scrap, at: dayStart + 16 * 3_600_000_000, from: PartyAtSite(party: shipper.id, site: shipperSites.first),
             to: nil, lines: [MovementLine(palletType: epal.id, quality: .a, quantity: broken)],
             declarer: shipper.id, note: "Broken boards")
    }
}
