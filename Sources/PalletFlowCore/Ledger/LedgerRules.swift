import Foundation

/// Limits on what one declaration may carry (TigerBeetle style: a limit on everything).
public enum DeclarationLimits {
    public static let quantityMax: Int64 = 100_000
    public static let linesMax = 100
    public static let noteLengthMax = 2_000
    public static let referenceLengthMax = 200
    /// Clock skew tolerated between a declarer's system and ours.
    public static let futureToleranceMicroseconds: Int64 = 15 * 60 * 1_000_000
    /// Pool operators refuse corrections after about 400 days; so do we for declarations.
    public static let pastMaxMicroseconds: Int64 = 400 * 86_400 * 1_000_000
}

/// The ledger's rules: who may declare what, and which entries a movement posts.
public enum LedgerRules {
    /// Checks a declaration against the ecosystem's directory and the declarer's role,
    /// and reports every invalid field at once. `field` prefixes field paths (batches).
    public static func validate(_ declaration: MovementDeclaration, declarer: Member, directory: Directory,
                                now: Instant, field prefix: String = "") -> [FieldError] {
        var check = DeclarationCheck(declaration: declaration, declarer: declarer, directory: directory, prefix: prefix)
        check.checkTime(now: now)
        check.checkSidesNamed()
        let fromMember = check.checkSide(declaration.from, "from")
        let toMember = check.checkSide(declaration.to, "to")
        check.checkKindRules(fromMember: fromMember, toMember: toMember)
        check.checkDeclarerTakesPart()
        check.checkLines()
        check.checkReferences()
        return check.errors
    }

    /// The entries a movement posts, summed per account and sorted in lock order.
    /// For an inventory, `book` gives the current balance of a holding account.
    public static func postings(for declaration: MovementDeclaration,
                                book: (AccountKey) -> Int64 = { _ in 0 }) -> [Posting] {
        var sums: [AccountKey: Int64] = [:]
        func post(_ key: AccountKey, _ amount: Int64) { sums[key, default: 0] += amount }

        for line in declaration.lines {
            let type = line.palletType
            let quantity = line.quantity
            switch declaration.kind {
            case .pickup, .delivery, .return, .transfer:
                guard let from = declaration.from, let to = declaration.to else { continue }
                post(.holding(from.party, site: from.site, type, line.quality), -quantity)
                post(.holding(to.party, site: to.site, type, line.quality), quantity)
                let exchanged = line.exchangedQuantity
                if exchanged > 0 {
                    post(.holding(to.party, site: to.site, type, line.exchangedQuality), -exchanged)
                    post(.holding(from.party, site: from.site, type, line.exchangedQuality), exchanged)
                }
                // The receiver owes the giver what it received and has not given back.
                if from.party != to.party {
                    post(.owed(to.party, to: from.party, type, line.quality), quantity)
                    post(.owed(from.party, to: to.party, type, line.quality), -quantity)
                    if exchanged > 0 {
                        post(.owed(to.party, to: from.party, type, line.exchangedQuality), -exchanged)
                        post(.owed(from.party, to: to.party, type, line.exchangedQuality), exchanged)
                    }
                }
            case .purchase:
                guard let to = declaration.to else { continue }
                post(.boundary(.poolIn, type, line.quality), -quantity)
                post(.holding(to.party, site: to.site, type, line.quality), quantity)
            case .repair:
                guard let from = declaration.from, let target = line.targetQuality else { continue }
                post(.holding(from.party, site: from.site, type, line.quality), -quantity)
                post(.holding(from.party, site: from.site, type, target), quantity)
            case .scrap:
                guard let from = declaration.from else { continue }
                post(.holding(from.party, site: from.site, type, line.quality), -quantity)
                post(.boundary(.scrapped, type, line.quality), quantity)
            case .loss:
                guard let from = declaration.from else { continue }
                post(.holding(from.party, site: from.site, type, line.quality), -quantity)
                post(.boundary(.lost, type, line.quality), quantity)
                if let owner = declaration.to {
                    post(.owed(from.party, to: owner.party, type, line.quality), -quantity)
                    post(.owed(owner.party, to: from.party, type, line.quality), quantity)
                }
            case .inventory:
                guard let from = declaration.from else { continue }
                let account = AccountKey.holding(from.party, site: from.site, type, line.quality)
                let difference = quantity - book(account) - (sums[account] ?? 0)
                post(account, difference)
                post(.boundary(.adjusted, type, line.quality), -difference)
            }
        }
        let postings = sums.filter { $0.value != 0 }.map { Posting($0.key, $0.value) }.sorted { $0.account < $1.account }
        assert(isConserved(postings), "postings of \(declaration.kind) are not conserved per pallet type")
        return postings
    }

    /// The postings that cancel a movement: the same entries with the opposite sign.
    public static func reversal(of postings: [Posting]) -> [Posting] {
        postings.map { Posting($0.account, -$0.amount) }
    }

    /// Double entry: per pallet type, the physical book (holdings and boundary) and the
    /// bilateral book (owed) each sum to zero.
    public static func isConserved(_ postings: [Posting]) -> Bool {
        var physical: [UUID: Int64] = [:]
        var owed: [UUID: Int64] = [:]
        for posting in postings {
            if posting.account.accountClass == .owed {
                owed[posting.account.palletType, default: 0] += posting.amount
            } else {
                physical[posting.account.palletType, default: 0] += posting.amount
            }
        }
        return physical.values.allSatisfy { $0 == 0 } && owed.values.allSatisfy { $0 == 0 }
    }
}

extension LedgerRules {
    /// Who is asked to confirm a declaration: the other party of a two-party movement.
    /// When the shipper declares for two other parties, the receiver confirms.
    /// Nil when only one party is involved: such movements are confirmed as declared.
    public static func counterparty(of declaration: MovementDeclaration, declarer: UUID) -> UUID? {
        guard declaration.kind.needsCounterparty, let from = declaration.from?.party, let to = declaration.to?.party,
              from != to
        else { return nil }
        if declarer == from { return to }
        if declarer == to { return from }
        return to
    }
}

extension Validator {
    /// The ledger's rules for one declaration of a request, its errors under `field`; where
    /// the request cannot take an inventory (a batch, a CSV, a correction), `inventory` is
    /// why, reported on `field.kind`. The one place the single, batch, CSV and reversal
    /// routes check what they are about to post.
    public mutating func apply(_ declaration: MovementDeclaration, declarer: Member, directory: Directory, now: Instant,
                               field: String = "", refusingInventory inventory: String? = nil) {
        if let inventory, declaration.kind == .inventory {
            add(field.isEmpty ? "kind" : field + ".kind", inventory)
        }
        for error in LedgerRules.validate(declaration, declarer: declarer, directory: directory, now: now, field: field) {
            add(error.field, error.message)
        }
    }
}

/// One declaration checked against the ledger's rules, part by part; errors come in the
/// order of the parts, which answers and tests rely on.
struct DeclarationCheck {
    let declaration: MovementDeclaration
    let declarer: Member
    let directory: Directory
    /// Prefixes field paths (a batch's `movements[3]`).
    let prefix: String
    private var check = Validator()

    init(declaration: MovementDeclaration, declarer: Member, directory: Directory, prefix: String) {
        self.declaration = declaration
        self.declarer = declarer
        self.directory = directory
        self.prefix = prefix
    }

    var errors: [FieldError] { check.errors }
    var kind: MovementKind { declaration.kind }

    func path(_ name: String) -> String { prefix.isEmpty ? name : prefix + "." + name }

    /// Some clock skew is tolerated; declarations older than pool operators accept are not.
    mutating func checkTime(now: Instant) {
        let age = now.microsecondsSinceEpoch - declaration.eventTime.microsecondsSinceEpoch
        check.check(age >= -DeclarationLimits.futureToleranceMicroseconds, path("eventTime"),
                    "is in the future (more than 15 minutes after the server's clock \(now.rfc3339(keepingOffset: false)))")
        check.check(age <= DeclarationLimits.pastMaxMicroseconds, path("eventTime"),
                    "is more than 400 days in the past; corrections that old are refused")
    }

    /// Which sides a kind names: pallets of a purchase come from outside the pool; a
    /// repair, scrap or count happens at one party's site; a loss may name an owner or not.
    mutating func checkSidesNamed() {
        let needsFrom = kind != .purchase
        let needsTo: Bool? = switch kind {
        case .pickup, .delivery, .return, .transfer, .purchase: true
        case .repair, .scrap, .inventory: false
        case .loss: nil
        }
        if needsFrom && declaration.from == nil { check.add(path("from"), "is required for a \(kind.rawValue)") }
        if !needsFrom && declaration.from != nil { check.add(path("from"), "must be absent: pallets of a purchase enter the pool") }
        if needsTo == true && declaration.to == nil { check.add(path("to"), "is required for a \(kind.rawValue)") }
        if needsTo == false && declaration.to != nil {
            check.add(path("to"), "must be absent for a \(kind.rawValue): it happens at one party's site")
        }
    }

    /// A side's party and site; the member if the declarer may see it, for the kind's rules.
    mutating func checkSide(_ side: PartyAtSite?, _ name: String) -> Member? {
        guard let side else { return nil }
        // A member the declarer may not know of is refused exactly like an unknown one.
        guard let member = directory.members[side.party], directory.sees(member, from: declarer) else {
            check.add(path("\(name).party"), "is not a member of this ecosystem")
            return nil
        }
        check.check(member.active, path("\(name).party"), "is an inactive member")
        check.check(member.role.holdsPallets, path("\(name).party"), "is a \(member.role.rawValue) and holds no pallets")
        if let siteID = side.site {
            if let site = directory.sites[siteID], site.owner == member.id {
                check.check(site.active, path("\(name).site"), "is an inactive site")
            } else {
                check.add(path("\(name).site"), "is not a site of \(name).party")
            }
        } else if member.role == .warehouse {
            check.add(path("\(name).site"), "is required: a warehouse declares at one of its sites")
        }
        return member
    }

    /// What each kind means between its parties: a carrier picks up and delivers, a return
    /// goes back to someone else, a transfer moves pallets somewhere else.
    mutating func checkKindRules(fromMember: Member?, toMember: Member?) {
        switch kind {
        case .pickup:
            if let toMember, toMember.role != .carrier { check.add(path("to.party"), "must be a carrier for a pickup") }
        case .delivery:
            if let fromMember, fromMember.role != .carrier { check.add(path("from.party"), "must be a carrier for a delivery") }
        case .return:
            if let from = declaration.from, let to = declaration.to, from.party == to.party {
                check.add(path("to.party"), "must differ from from.party: a return goes back to another party")
            }
        case .transfer:
            if let from = declaration.from, let to = declaration.to, from.party == to.party, from.site == to.site {
                check.add(path("to.site"), "must differ from from.site for a transfer within one party")
            }
        case .loss:
            if let from = declaration.from, let to = declaration.to, from.party == to.party {
                check.add(path("to.party"), "must be the owner whose claim is written off, not the holder itself")
            }
        case .purchase, .repair, .scrap, .inventory:
            break
        }
    }

    /// The declarer must take part, except the shipper, who administers the ecosystem.
    mutating func checkDeclarerTakesPart() {
        if declarer.role == .coordinator {
            check.add(path("declarer"), "a coordinator does not declare movements")
        } else if declarer.role != .shipper {
            let takesPart = declaration.from?.party == declarer.id || declaration.to?.party == declarer.id
            if !takesPart {
                check.add(declaration.from == nil ? path("to.party") : path("from.party"),
                          "the declarer must be one of the movement's parties")
            }
        }
    }

    mutating func checkLines() {
        if declaration.lines.isEmpty { check.add(path("lines"), "must hold at least one line") }
        if declaration.lines.count > DeclarationLimits.linesMax {
            check.add(path("lines"), "holds \(declaration.lines.count) lines; at most \(DeclarationLimits.linesMax) per movement")
        }
        for (index, line) in declaration.lines.enumerated() { checkLine(line, path: path("lines[\(index)]")) }
    }

    /// A count may find no pallet at all; any other movement moves at least one. Only a
    /// pickup or a delivery exchanges empties on the spot, and only exchangeable ones.
    mutating func checkLine(_ line: MovementLine, path linePath: String) {
        let minimum: Int64 = kind == .inventory ? 0 : 1
        check.check(line.quantity >= minimum && line.quantity <= DeclarationLimits.quantityMax, linePath + ".quantity",
                    "must be between \(minimum) and \(DeclarationLimits.quantityMax), got \(line.quantity)")
        if let type = directory.palletTypes[line.palletType] {
            check.check(type.active, linePath + ".palletType", "\(type.code) is inactive in this ecosystem")
            if line.exchangedQuantity > 0 && !type.exchangeable {
                check.add(linePath + ".exchangedQuantity", "\(type.code) is a one-way pallet and is not exchanged")
            }
        } else {
            check.add(linePath + ".palletType", "is not a pallet type of this ecosystem")
        }
        if kind.allowsExchange {
            check.check(line.exchangedQuantity >= 0 && line.exchangedQuantity <= DeclarationLimits.quantityMax,
                        linePath + ".exchangedQuantity",
                        "must be between 0 and \(DeclarationLimits.quantityMax), got \(line.exchangedQuantity)")
        } else if line.exchangedQuantity != 0 {
            check.add(linePath + ".exchangedQuantity", "only pickups and deliveries exchange empties on the spot")
        }
        if kind == .repair {
            if let target = line.targetQuality {
                check.check(target != line.quality, linePath + ".targetQuality", "must differ from quality")
            } else {
                check.add(linePath + ".targetQuality", "is required for a repair")
            }
        } else if line.targetQuality != nil {
            check.add(linePath + ".targetQuality", "is only for repairs")
        }
    }

    /// References, note and evidence are bounded like everything a declarer sends.
    mutating func checkReferences() {
        for (name, value) in [("deliveryNote", declaration.references.deliveryNote), ("cmr", declaration.references.cmr),
                              ("order", declaration.references.order), ("palletNote", declaration.references.palletNote)] {
            if let value, value.count > DeclarationLimits.referenceLengthMax {
                check.add(path("references.\(name)"), "is longer than \(DeclarationLimits.referenceLengthMax) characters")
            }
        }
        if let note = declaration.note, note.count > DeclarationLimits.noteLengthMax {
            check.add(path("note"), "is longer than \(DeclarationLimits.noteLengthMax) characters")
        }
        if let evidence = declaration.evidence {
            let hex = evidence.sha256.lowercased()
            check.check(hex.count == 64 && hex.allSatisfy { $0.isHexDigit }, path("evidence.sha256"),
                        "must be 64 hexadecimal characters (a SHA-256 digest)")
            if let url = evidence.url {
                check.check(url.hasPrefix("https://") || url.hasPrefix("http://"), path("evidence.url"),
                            "must be an http(s) URL")
            }
        }
    }
}
