import PalletFlowContract
import Foundation
import OpenAPIRuntime
import PalletFlowCore
import PalletFlowStore

/// Largest batch: lines across all movements of one request.
let batchLinesMax = 10_000

extension APIImplementation {
    // MARK: Declarations

    func declareMovement(_ input: Operations.DeclareMovement.Input) async throws -> Operations.DeclareMovement.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let idempotency = try requireIdempotency()
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let (directory, ecosystem) = try await directoryCache.get(caller.ecosystem, store: store)
        let declarer = try declaringMember(caller, directory)
        var check = Validator()
        let declaration = convert(body, directory: directory, prefix: "", check: &check)
        let now = store.now
        check.apply(declaration, declarer: declarer, directory: directory, now: now)
        try check.throwIfInvalid()
        var movement = try await prepare(declaration, caller: caller, ecosystem: ecosystem, recordTime: now,
                                         issueNotes: body.palletNote?.issue ?? false, serial: body.palletNote?.serial)
        let output = Components.Schemas.Movement(movement)
        let bytes = try encodeForReplay(output)
        let write = IdempotentWrite(key: idempotency.key, requestHash: idempotency.requestHash, status: 201, body: bytes)
        let outcome: PostOutcome
        if declaration.kind == .inventory {
            outcome = try await postInventory(&movement, caller: caller, idempotency: write)
        } else {
            outcome = try await store.post(ecosystem: caller.ecosystem, by: caller.membership, [movement], idempotency: write)
        }
        switch outcome {
        case .posted:
            if declaration.kind == .inventory {
                let bytes = try encodeForReplay(Components.Schemas.Movement(movement))
                idempotency.response = (201, bytes)
                return .created(.init(body: .json(.init(movement))))
            }
            idempotency.response = (201, bytes)
            return .created(.init(body: .json(output)))
        case .replay(let status, let stored):
            idempotency.response = (status, stored)
            idempotency.replayed = true
            return .created(.init(body: .json(try JSONDecoder().decode(Components.Schemas.Movement.self, from: Data(stored)))))
        case .keyReused:
            throw Self.keyReused
        }
    }

    /// An inventory posts the difference with the book: read and lock the book, then post,
    /// in one transaction, so no declaration slips in between.
    func postInventory(_ movement: inout MovementToPost, caller: Caller, idempotency: IdempotentWrite) async throws -> PostOutcome {
        if let earlier = try await store.idempotentReplay(ecosystem: caller.ecosystem, member: caller.membership, key: idempotency) {
            return earlier
        }
        let declaration = movement.declaration
        let keys = declaration.lines.map { AccountKey.holding(declaration.from!.party, site: declaration.from!.site, $0.palletType, $0.quality) }
        let planned = movement
        let result = try await store.transaction { connection in
            let book = try await store.lockHoldings(ecosystem: caller.ecosystem, keys, on: connection)
            var posted = planned
            posted.postings = LedgerRules.postings(for: declaration) { book[$0] ?? 0 }
            let bytes = try encodeForReplay(Components.Schemas.Movement(posted))
            let write = IdempotentWrite(key: idempotency.key, requestHash: idempotency.requestHash, status: 201, body: bytes)
            let outcome = try await store.post(ecosystem: caller.ecosystem, by: caller.membership, [posted],
                                               idempotency: write, on: connection)
            return (posted, outcome)
        }
        movement = result.0
        return result.1
    }

    static let keyReused = Problem(
        .unprocessableContent, "idempotency-key-reused", "Idempotency-Key reused",
        detail: "This Idempotency-Key was already used with a different request. Use a new key for a new write.")

    func requireIdempotency() throws -> IdempotencyContext {
        guard let idempotency = RequestScope.current.idempotency else { throw idempotencyKeyRequired }
        return idempotency
    }

    func declaringMember(_ caller: Caller, _ directory: Directory) throws -> Member {
        guard caller.role != .coordinator else {
            throw Problem.forbidden("A coordinator reads and mediates; it does not declare movements.")
        }
        guard let member = directory.members[caller.membership] else { throw Problem.invalidToken }
        return member
    }

    /// Turns a checked declaration into what gets posted: postings, counterparty, notes.
    func prepare(_ declaration: MovementDeclaration, caller: Caller, ecosystem: EcosystemRecord, recordTime: Instant,
                 issueNotes: Bool, serial: String?, source: String = "api") async throws -> MovementToPost {
        let counterparty = LedgerRules.counterparty(of: declaration, declarer: caller.membership)
        var notes: [IssuedNote] = []
        if issueNotes {
            let issue = String(declaration.eventTime.rfc3339(keepingOffset: true).prefix(10))
            let due = Instant(microsecondsSinceEpoch: declaration.eventTime.microsecondsSinceEpoch
                + Int64(ecosystem.noteDueDays) * 86_400_000_000, offsetMinutes: declaration.eventTime.offsetMinutes)
            notes = LedgerRules.shortfallNotes(for: declaration, serial: serial).map {
                IssuedNote(id: newID(at: recordTime.date), terms: $0, issueDate: issue,
                           dueDate: String(due.rfc3339(keepingOffset: true).prefix(10)))
            }
        }
        return MovementToPost(id: newID(at: recordTime.date), declaration: declaration, declarer: caller.membership, counterparty: counterparty,
                              recordTime: recordTime, source: source, postings: LedgerRules.postings(for: declaration),
                              notes: notes, confirmed: counterparty == nil)
    }

    /// Generated request type to domain declaration. Unreadable times are reported here;
    /// unknown ids become ids that match nothing, so the ledger rules report them with
    /// every other mistake in one answer.
    func convert(_ body: Components.Schemas.MovementDeclaration, directory: Directory, prefix: String,
                 check: inout Validator) -> MovementDeclaration {
        func path(_ name: String) -> String { prefix.isEmpty ? name : prefix + "." + name }
        var time = Instant.parse(body.eventTime)
        if time == nil {
            check.add(path("eventTime"), "must be an RFC 3339 date-time with offset, e.g. 2026-11-20T07:45:00+01:00")
            time = store.now
        }
        func side(_ side: Components.Schemas.PartyAtSite?) -> PartyAtSite? {
            guard let side else { return nil }
            let party = UUID(parsing: side.partyId) ?? directory.member(side.partyId)?.id ?? UUID()
            let site = side.siteId.map { UUID(parsing: $0) ?? directory.site($0)?.id ?? UUID() }
            return PartyAtSite(party: party, site: site)
        }
        let lines = body.lines.map { line in
            MovementLine(
                palletType: directory.palletType(line.palletType)?.id ?? UUID(),
                quality: line.quality.map { QualityGrade(rawValue: $0.rawValue)! } ?? .a,
                quantity: line.quantity, exchangedQuantity: line.exchangedQuantity ?? 0,
                exchangedQuality: line.exchangedQuality.map { QualityGrade(rawValue: $0.rawValue)! },
                targetQuality: line.targetQuality.map { QualityGrade(rawValue: $0.rawValue)! })
        }
        return MovementDeclaration(
            kind: MovementKind(rawValue: body.kind.rawValue)!, eventTime: time!, from: side(body.from), to: side(body.to),
            lines: lines,
            references: MovementReferences(deliveryNote: body.references?.deliveryNote, cmr: body.references?.cmr,
                                           order: body.references?.order, palletNote: body.references?.palletNote),
            evidence: body.evidence.map { Evidence(sha256: $0.sha256, url: $0.url) }, note: body.note)
    }

    func declareMovementBatch(_ input: Operations.DeclareMovementBatch.Input) async throws -> Operations.DeclareMovementBatch.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let idempotency = try requireIdempotency()
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let (directory, ecosystem) = try await directoryCache.get(caller.ecosystem, store: store)
        let declarer = try declaringMember(caller, directory)
        var check = Validator()
        try checkBatchSize(body.movements.reduce(0) { $0 + $1.lines.count }, movements: body.movements.count)
        var declarations: [(MovementDeclaration, Components.Schemas.MovementDeclaration)] = []
        let now = store.now
        for (index, item) in body.movements.enumerated() {
            let prefix = "movements[\(index)]"
            let declaration = convert(item, directory: directory, prefix: prefix, check: &check)
            check.apply(declaration, declarer: declarer, directory: directory, now: now, field: prefix,
                        refusingInventory: "inventory counts are declared one at a time (POST /movements)")
            declarations.append((declaration, item))
        }
        try check.throwIfInvalid()
        var movements: [MovementToPost] = []
        for (declaration, item) in declarations {
            movements.append(try await prepare(declaration, caller: caller, ecosystem: ecosystem, recordTime: now,
                                               issueNotes: item.palletNote?.issue ?? false, serial: item.palletNote?.serial))
        }
        return .created(.init(body: .json(try await postBatch(movements, caller: caller, idempotency: idempotency))))
    }

    func checkBatchSize(_ lines: Int, movements: Int) throws {
        guard movements > 0 else { throw Problem.validation([FieldError("movements", "must hold at least one movement")]) }
        guard lines <= batchLinesMax else {
            throw Problem.validation([FieldError("movements", "hold \(lines) lines; a batch holds at most \(batchLinesMax)")],
                                     detail: "The batch is over the limit of \(batchLinesMax) lines; split it. Nothing was written.")
        }
    }

    func postBatch(_ movements: [MovementToPost], caller: Caller, idempotency: IdempotencyContext) async throws
        -> Components.Schemas.BatchResult
    {
        let result = Components.Schemas.BatchResult(
            count: movements.count, lineCount: movements.reduce(0) { $0 + $1.declaration.lines.count },
            items: movements.map { .init(id: $0.id.lowercase, status: .init(rawValue: $0.status)!) })
        let bytes = try encodeForReplay(result)
        let write = IdempotentWrite(key: idempotency.key, requestHash: idempotency.requestHash, status: 201, body: bytes)
        switch try await store.post(ecosystem: caller.ecosystem, by: caller.membership, movements, idempotency: write) {
        case .posted:
            idempotency.response = (201, bytes)
            return result
        case .replay(let status, let stored):
            idempotency.response = (status, stored)
            idempotency.replayed = true
            return try JSONDecoder().decode(Components.Schemas.BatchResult.self, from: Data(stored))
        case .keyReused:
            throw Self.keyReused
        }
    }

    func importMovementsCSV(_ input: Operations.ImportMovementsCSV.Input) async throws -> Operations.ImportMovementsCSV.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let idempotency = try requireIdempotency()
        guard case .csv(let body) = input.body else { throw Problem.badRequest("Expected text/csv.") }
        let bytes = try await [UInt8](collecting: body, upTo: 64 * 1024 * 1024)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw Problem.badRequest("The CSV is not valid UTF-8; export it as UTF-8.", errors: [FieldError("body", "is not UTF-8")])
        }
        let (directory, ecosystem) = try await directoryCache.get(caller.ecosystem, store: store)
        let declarer = try declaringMember(caller, directory)
        // Parties the declarer may not know of read as unknown ones.
        let (parsed, errors) = MovementCSV.parse(text, directory: directory.seen(by: declarer))
        guard let parsed else { throw Problem.validation(errors) }
        try checkBatchSize(parsed.declarations.reduce(0) { $0 + $1.lines.count }, movements: parsed.declarations.count)
        var check = Validator()
        let now = store.now
        for (index, declaration) in parsed.declarations.enumerated() {
            check.apply(declaration, declarer: declarer, directory: directory, now: now,
                        field: "row[\(parsed.rows[index][0])]", refusingInventory: "inventory counts are declared one at a time")
        }
        try check.throwIfInvalid()
        var movements: [MovementToPost] = []
        for declaration in parsed.declarations {
            movements.append(try await prepare(declaration, caller: caller, ecosystem: ecosystem, recordTime: now,
                                               issueNotes: false, serial: nil, source: "csv"))
        }
        return .created(.init(body: .json(try await postBatch(movements, caller: caller, idempotency: idempotency))))
    }

    func exportMovementsCSV(_ input: Operations.ExportMovementsCSV.Input) async throws -> Operations.ExportMovementsCSV.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
        var filter = try movementFilter(caller, party: input.query.party, from: input.query.from, until: input.query.until)
        filter.limit = 1000
        // The first page is read before answering, so that its errors are still a
        // problem+json; the others are read as the client takes the body.
        let first = try await readStore.movements(ecosystem: caller.ecosystem, filter)
        let pages = MovementCSVPages(store: readStore, ecosystem: caller.ecosystem, directory: directory, filter: filter, first: first)
        return .ok(.init(body: .csv(HTTPBody(pages, length: .unknown, iterationBehavior: .single))))
    }

    // MARK: Reading

    func movementFilter(_ caller: Caller, party: String?, from: String?, until: String?) throws -> MovementFilter {
        var check = Validator()
        var filter = MovementFilter(visibleTo: caller.role.readsWholeEcosystem ? nil : caller.membership)
        if let party {
            if let id = UUID(parsing: party) { filter.party = id } else { check.add("party", "must be a member id") }
        }
        if let from {
            if let instant = Instant.parse(from) { filter.from = instant } else { check.add("from", "must be an RFC 3339 instant") }
        }
        if let until {
            if let instant = Instant.parse(until) { filter.until = instant } else { check.add("until", "must be an RFC 3339 instant") }
        }
        try check.throwIfInvalid()
        return filter
    }

    func listMovements(_ input: Operations.ListMovements.Input) async throws -> Operations.ListMovements.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
        var filter = try movementFilter(caller, party: input.query.party, from: input.query.from, until: input.query.until)
        var check = Validator()
        if let site = input.query.site {
            if let id = UUID(parsing: site) { filter.site = id } else { check.add("site", "must be a site id") }
        }
        if let type = input.query.palletType {
            if let found = directory.palletType(type) { filter.palletType = found.id } else {
                check.add("palletType", "is not a pallet type id or code of this ecosystem")
            }
        }
        filter.kind = input.query.kind.map { MovementKind(rawValue: $0.rawValue)! }
        filter.status = input.query.status?.rawValue
        let limit = input.query.limit ?? 100
        check.check((1...1000).contains(limit), "limit", "must be between 1 and 1000")
        if let cursor = input.query.cursor {
            if let movement = MovementCursor.decode(cursor) { filter.beforeMovement = movement } else {
                check.add("cursor", "is not a cursor returned by this API")
            }
        }
        try check.throwIfInvalid()
        filter.limit = limit
        let page = try await store.movements(ecosystem: caller.ecosystem, filter)
        if page.isEmpty, let movement = filter.beforeMovement,
           try await store.movement(ecosystem: caller.ecosystem, id: movement) == nil {
            throw Problem.validation([FieldError("cursor", "is not a cursor returned by this API for this ecosystem")])
        }
        let next = page.count == limit ? page.last.map { MovementCursor.encode($0.id) } : nil
        return .ok(.init(body: .json(.init(items: page.map(Components.Schemas.Movement.init), nextCursor: next))))
    }

    /// A movement the caller may see, or 404.
    func visibleMovement(_ caller: Caller, _ id: String) async throws -> PostedMovement {
        guard let id = UUID(parsing: id), let movement = try await store.movement(ecosystem: caller.ecosystem, id: id),
              caller.role.readsWholeEcosystem || movement.involves(caller.membership)
        else { throw Problem.notFound("movement") }
        return movement
    }

    func getMovement(_ input: Operations.GetMovement.Input) async throws -> Operations.GetMovement.Output {
        let caller = try caller(in: input.path.ecosystemId)
        return .ok(.init(body: .json(.init(try await visibleMovement(caller, input.path.movementId)))))
    }

    // MARK: Confirmation and disputes

    func confirmMovement(_ input: Operations.ConfirmMovement.Input) async throws -> Operations.ConfirmMovement.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let movement = try await visibleMovement(caller, input.path.movementId)
        let confirmed = try await store.confirm(ecosystem: caller.ecosystem, movement: movement.id, by: caller.membership,
                                                asShipper: false)
        return .ok(.init(body: .json(.init(confirmed))))
    }

    func contestMovement(_ input: Operations.ContestMovement.Input) async throws -> Operations.ContestMovement.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let movement = try await visibleMovement(caller, input.path.movementId)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let counts = body.lines.map { CounterLine(lineNo: $0.lineNo, quantity: $0.quantity, exchangedQuantity: $0.exchangedQuantity ?? 0) }
        try Self.checkCounts(counts, of: movement, what: "your count")
        let record = try await store.contest(
            ecosystem: caller.ecosystem, movement: movement.id, by: caller.membership,
            counterLines: counts,
            evidence: body.evidence.map { Evidence(sha256: $0.sha256, url: $0.url) }, note: body.note)
        return .created(.init(body: .json(.init(record, movement: movement))))
    }

    /// A count given line by line against a movement, by a contest or an agreed resolution:
    /// each line of the movement at most once, each quantity within the limits. Every bad
    /// field is named (a bad count never reaches the ledger, where it would fail as a 500).
    static func checkCounts(_ counts: [CounterLine], of movement: PostedMovement, what: String) throws {
        var check = Validator()
        check.check(!counts.isEmpty, "lines", "must give \(what) of at least one line")
        var seen = Set<Int>()
        for (index, line) in counts.enumerated() {
            if !movement.lines.indices.contains(line.lineNo) {
                check.add("lines[\(index)].lineNo", "the movement has no line \(line.lineNo) (its lines are 0 to \(movement.lines.count - 1))")
            } else if !seen.insert(line.lineNo).inserted {
                check.add("lines[\(index)].lineNo", "line \(line.lineNo) is given twice")
            }
            check.check((0...DeclarationLimits.quantityMax).contains(line.quantity), "lines[\(index)].quantity",
                        "must be between 0 and \(DeclarationLimits.quantityMax)")
            check.check((0...DeclarationLimits.quantityMax).contains(line.exchangedQuantity),
                        "lines[\(index)].exchangedQuantity", "must be between 0 and \(DeclarationLimits.quantityMax)")
        }
        try check.throwIfInvalid()
    }

    func resolveDiscrepancy(_ input: Operations.ResolveDiscrepancy.Input) async throws -> Operations.ResolveDiscrepancy.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let movement = try await visibleMovement(caller, input.path.movementId)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let resolution = Store.Resolution(rawValue: body.accept.rawValue)!
        let contester = try await store.discrepancies(ecosystem: caller.ecosystem, movement: movement.id).first?.contestedBy
        let mediator = caller.role == .shipper || caller.role == .coordinator
        let allowed = mediator || (resolution == .contested && caller.membership == movement.declarer)
            || (resolution == .declared && caller.membership == contester)
        guard allowed else {
            throw Problem.forbidden("The shipper or coordinator resolves discrepancies; the declarer may accept the contested version, the contester may withdraw.")
        }
        let agreed = body.lines?.map { CounterLine(lineNo: $0.lineNo, quantity: $0.quantity, exchangedQuantity: $0.exchangedQuantity ?? 0) }
        if resolution == .agreed {
            try Self.checkCounts(agreed ?? [], of: movement, what: "the agreed counts")
        }
        let record = try await store.resolve(
            ecosystem: caller.ecosystem, movement: movement.id, by: caller.membership, resolution: resolution,
            agreedLines: agreed, note: body.note)
        return .ok(.init(body: .json(.init(record, movement: movement))))
    }

    func reverseMovement(_ input: Operations.ReverseMovement.Input) async throws -> Operations.ReverseMovement.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let movement = try await visibleMovement(caller, input.path.movementId)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let ownUnconfirmed = movement.declarer == caller.membership && !movement.confirmed
        guard caller.role == .shipper || ownUnconfirmed else {
            throw Problem.forbidden("The declarer may reverse its own movement until it is confirmed; after that only the shipper may.")
        }
        let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
        var correction: MovementDeclaration?
        if let corrected = body.correction {
            var check = Validator()
            correction = convert(corrected, directory: directory, prefix: "correction", check: &check)
            if let correction, let declarer = directory.members[movement.declarer] {
                check.apply(correction, declarer: declarer, directory: directory, now: store.now, field: "correction",
                            refusingInventory: "an inventory cannot be a correction")
            }
            try check.throwIfInvalid()
        }
        try requireMaxLength([("reason", body.reason, 2_000)])
        let result = try await store.transaction { connection in
            try await store.reverse(ecosystem: caller.ecosystem, movement: movement.id, by: caller.membership,
                                    right: caller.role == .shipper ? .always : .whileUnconfirmed,
                                    correction: correction, correctionConfirmed: false, reason: body.reason, on: connection)
        }
        return .created(.init(body: .json(.init(reversalId: result.reversal.lowercase, correctionId: result.correction?.lowercase))))
    }

    func listDiscrepancies(_ input: Operations.ListDiscrepancies.Input) async throws -> Operations.ListDiscrepancies.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let records = try await store.discrepancies(ecosystem: caller.ecosystem, openOnly: input.query.open ?? false,
                                                    party: caller.role.readsWholeEcosystem ? nil : caller.membership)
        let movements = try await store.movements(ecosystem: caller.ecosystem, ids: records.map(\.movement))
        let items = records.compactMap { record in
            movements[record.movement].map { Components.Schemas.Discrepancy(record, movement: $0) }
        }
        return .ok(.init(body: .json(.init(items: items))))
    }

    // MARK: Balances

    func listBalances(_ input: Operations.ListBalances.Input) async throws -> Operations.ListBalances.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
        var check = Validator()
        var party: UUID?
        if let text = input.query.party {
            party = UUID(parsing: text)
            if party == nil { check.add("party", "must be a member id") }
        }
        var asOf: Instant?
        if let text = input.query.asOf {
            asOf = Instant.parse(text)
            if asOf == nil { check.add("asOf", "must be an RFC 3339 instant") }
        }
        try check.throwIfInvalid()
        if !caller.role.readsWholeEcosystem {
            if let party, party != caller.membership { throw Problem.notFound("member") }
            party = caller.membership
        }
        let holdings = input.query.view == .holdings
        let classes: [AccountClass] = holdings
            ? (party == nil ? [.holding, .poolIn, .scrapped, .lost, .adjusted] : [.holding]) : [.owed]
        let balances = try await store.balances(ecosystem: caller.ecosystem, classes: classes, party: party, asOf: asOf)
        return .ok(.init(body: .json(.init(
            asOf: asOf?.description,
            items: balances.map { balance in
                Components.Schemas.Balance(
                    accountClass: .init(rawValue: balance.key.accountClass.rawValue)!,
                    partyId: balance.key.party == noneID ? nil : balance.key.party.lowercase,
                    counterpartyId: balance.key.counterparty == noneID ? nil : balance.key.counterparty.lowercase,
                    siteId: balance.key.site == noneID ? nil : balance.key.site.lowercase,
                    palletTypeId: balance.key.palletType.lowercase,
                    palletTypeCode: directory.palletTypes[balance.key.palletType]?.code,
                    quality: .init(rawValue: balance.key.quality.rawValue)!,
                    balance: balance.balance, confirmed: balance.confirmed, pending: balance.pending)
            }))))
    }

    func verifyLedger(_ input: Operations.VerifyLedger.Input) async throws -> Operations.VerifyLedger.Output {
        let caller = try caller(in: input.path.ecosystemId)
        guard caller.role.readsWholeEcosystem else {
            throw Problem.forbidden("The ledger check reads every account: shipper and coordinator only.")
        }
        let report = try await readStore.verifyLedger(ecosystem: caller.ecosystem,
                                                      statementTimeoutSeconds: settings.heavyReadTimeoutSeconds)
        return .ok(.init(body: .json(.init(
            holds: report.holds, accounts: report.accounts, entries: report.entries, movements: report.movements,
            balanceMismatches: report.balanceMismatches, conservationViolations: report.conservationViolations,
            mirrorViolations: report.mirrorViolations, unbalancedMovements: report.unbalancedMovements,
            reversedTwice: report.reversedTwice))))
    }
}

/// Responses stored for replay are encoded once, here, with sorted keys.
func encodeForReplay<T: Encodable>(_ value: T) throws -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return Array(try encoder.encode(value))
}

extension Components.Schemas.Movement {
    /// One rendering for a movement about to be posted and one read back: the same bytes
    /// either way, which idempotent replays rely on.
    init(id: UUID, declaration: MovementDeclaration, status: String, confirmed: Bool, recordTime: Instant, declarer: UUID,
         counterparty: UUID?, reverses: UUID?, corrects: UUID?, source: String, notes: [UUID]) {
        self.init(
            id: id.lowercase, kind: .init(rawValue: declaration.kind.rawValue)!,
            status: .init(rawValue: status)!, confirmed: confirmed,
            eventTime: declaration.eventTime.description, recordTime: recordTime.rfc3339(keepingOffset: false),
            latenessSeconds: (recordTime.microsecondsSinceEpoch - declaration.eventTime.microsecondsSinceEpoch) / 1_000_000,
            declarerId: declarer.lowercase, from: declaration.from.map(Components.Schemas.PartyAtSite.init),
            to: declaration.to.map(Components.Schemas.PartyAtSite.init), counterpartyId: counterparty?.lowercase,
            lines: declaration.lines.map(Components.Schemas.MovementLine.init), references: .init(declaration.references),
            evidence: declaration.evidence.map { .init(sha256: $0.sha256.lowercased(), url: $0.url) }, note: declaration.note,
            reversesId: reverses?.lowercase, correctsId: corrects?.lowercase, source: source,
            palletNoteIds: notes.isEmpty ? nil : notes.map(\.lowercase))
    }

    init(_ movement: MovementToPost) {
        self.init(id: movement.id, declaration: movement.declaration, status: movement.status, confirmed: movement.confirmed,
                  recordTime: movement.recordTime, declarer: movement.declarer, counterparty: movement.counterparty,
                  reverses: movement.reverses, corrects: movement.corrects, source: movement.source,
                  notes: movement.notes.map(\.id))
    }

    init(_ movement: PostedMovement) {
        self.init(id: movement.id, declaration: movement.declaration, status: movement.status, confirmed: movement.confirmed,
                  recordTime: movement.recordTime, declarer: movement.declarer, counterparty: movement.counterparty,
                  reverses: movement.reverses, corrects: movement.corrects, source: movement.source, notes: [])
    }
}

extension Components.Schemas.PartyAtSite {
    init(_ side: PartyAtSite) {
        self.init(partyId: side.party.lowercase, siteId: side.site?.lowercase)
    }
}

extension Components.Schemas.MovementLine {
    init(_ line: MovementLine) {
        self.init(palletTypeId: line.palletType.lowercase, quality: .init(rawValue: line.quality.rawValue)!,
                  quantity: line.quantity, exchangedQuantity: line.exchangedQuantity,
                  exchangedQuality: .init(rawValue: line.exchangedQuality.rawValue)!,
                  targetQuality: line.targetQuality.map { .init(rawValue: $0.rawValue)! })
    }
}

extension Components.Schemas.References {
    init?(_ references: MovementReferences) {
        guard references.deliveryNote != nil || references.cmr != nil || references.order != nil || references.palletNote != nil
        else { return nil }
        self.init(deliveryNote: references.deliveryNote, cmr: references.cmr, order: references.order,
                  palletNote: references.palletNote)
    }
}

extension Components.Schemas.Discrepancy {
    init(_ record: DiscrepancyRecord, movement: PostedMovement) {
        self.init(
            id: record.id.lowercase, movementId: record.movement.lowercase, contestedBy: record.contestedBy.lowercase,
            declared: movement.lines.enumerated().map {
                .init(lineNo: $0.offset, quantity: $0.element.quantity, exchangedQuantity: $0.element.exchangedQuantity)
            },
            contested: record.counterLines.map { .init(lineNo: $0.lineNo, quantity: $0.quantity, exchangedQuantity: $0.exchangedQuantity) },
            evidence: record.evidence.map { .init(sha256: $0.sha256, url: $0.url) }, note: record.note,
            openedAt: record.openedAt, resolvedAt: record.resolvedAt, resolution: record.resolution,
            resolutionNote: record.resolutionNote, correctionMovementId: record.correction?.lowercase)
    }
}

/// The CSV export streamed a page of 1,000 movements at a time, each page read when the
/// client has taken the previous one: on a grown ledger the whole export took longer
/// than clients wait for a first byte (Schemathesis's 10 s at 245,000 movements), and was
/// held in memory whole. Pages follow `seq` downwards, so movements recorded meanwhile
/// are neither repeated nor skipped.
struct MovementCSVPages: AsyncSequence, Sendable {
    typealias Element = ArraySlice<UInt8>
    let store: Store
    let ecosystem: UUID
    let directory: Directory
    let filter: MovementFilter
    let first: [PostedMovement]

    func makeAsyncIterator() -> Iterator {
        Iterator(pages: self, filter: filter, page: first)
    }

    struct Iterator: AsyncIteratorProtocol {
        let pages: MovementCSVPages
        var filter: MovementFilter
        var page: [PostedMovement]?
        var headerSent = false

        mutating func next() async throws -> ArraySlice<UInt8>? {
            guard headerSent else {
                headerSent = true
                return ArraySlice(CSV.line(MovementCSV.columns).utf8)
            }
            guard let current = page, !current.isEmpty else { return nil }
            var text = ""
            for movement in current {
                for row in MovementCSV.rows(movementReference: movement.id.lowercase, movement.declaration, directory: pages.directory) {
                    text += CSV.line(row)
                }
            }
            if current.count == filter.limit, let last = current.last {
                filter.beforeSeq = last.seq
                page = try await pages.store.movements(ecosystem: pages.ecosystem, filter)
            } else {
                page = nil
            }
            return ArraySlice(text.utf8)
        }
    }
}

/// The movement list's cursor: the last movement of a page, which the next page starts
/// after. It holds that movement's id only (the caller's own data), not the ledger's
/// sequence number, which counts every ecosystem's movements.
enum MovementCursor {
    static func encode(_ movement: UUID) -> String {
        let bytes = withUnsafeBytes(of: movement.uuid) { Array($0) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ cursor: String) -> UUID? {
        var base64 = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard cursor.count <= 32, let data = Data(base64Encoded: base64), data.count == 16 else { return nil }
        let b = [UInt8](data)
        return UUID(uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
    }
}
