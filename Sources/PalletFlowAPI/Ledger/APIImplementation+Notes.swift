import PalletFlowContract
import Foundation
import PalletFlowCore
import PalletFlowStore

extension APIImplementation {
    /// A note the caller may see (issuer, holder, proposed holder, shipper, coordinator), or 404.
    func visibleNote(_ caller: Caller, _ id: String) async throws -> PalletNoteRecord {
        guard let id = UUID(parsing: id), let note = try await store.palletNote(ecosystem: caller.ecosystem, id: id),
              caller.role.readsWholeEcosystem || note.issuer == caller.membership || note.holder == caller.membership
                || note.pendingHolder == caller.membership
        else { throw Problem.notFound("pallet note") }
        return note
    }

    func listPalletNotes(_ input: Operations.ListPalletNotes.Input) async throws -> Operations.ListPalletNotes.Output {
        let caller = try caller(in: input.path.ecosystemId)
        var party: UUID?
        if let text = input.query.party {
            guard let id = UUID(parsing: text) else { throw Problem.validation([FieldError("party", "must be a member id")]) }
            party = id
        }
        if !caller.role.readsWholeEcosystem {
            if let party, party != caller.membership { throw Problem.notFound("member") }
            party = caller.membership
        }
        var notes = try await store.palletNotes(ecosystem: caller.ecosystem, party: party)
        if let state = input.query.state { notes = notes.filter { $0.state.rawValue == state.rawValue } }
        return .ok(.init(body: .json(.init(items: notes.map(Components.Schemas.PalletNote.init)))))
    }

    func issuePalletNote(_ input: Operations.IssuePalletNote.Input) async throws -> Operations.IssuePalletNote.Output {
        let caller = try caller(in: input.path.ecosystemId)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let (full, ecosystem) = try await directoryCache.get(caller.ecosystem, store: store)
        // Members the caller may not know of read as unknown ones.
        let directory = full.members[caller.membership].map { full.seen(by: $0) } ?? full
        // Before anything is read of the issuer: a partner issues only as the party that owes,
        // and naming any other issuer is answered alike, whether that member exists or not.
        guard caller.role == .shipper || directory.member(body.issuerId)?.id == caller.membership else {
            throw Problem.forbidden("A pallet note is issued by the party that owes the pallets (or by the shipper for it).")
        }
        var check = Validator()
        let issuer = directory.member(body.issuerId)
        let holder = directory.member(body.holderId)
        if issuer == nil { check.add("issuerId", "is not a member of this ecosystem") }
        if holder == nil { check.add("holderId", "is not a member of this ecosystem") }
        // A note is a debt in pallets between two parties that hold them.
        if let issuer, !issuer.role.holdsPallets { check.add("issuerId", "is a \(issuer.role.rawValue) and owes no pallets") }
        if let holder, !holder.role.holdsPallets { check.add("holderId", "is a \(holder.role.rawValue) and is owed no pallets") }
        if let issuer, let holder, issuer.id == holder.id { check.add("holderId", "must differ from the issuer") }
        let type = directory.palletType(body.palletType)
        if type == nil { check.add("palletType", "is not a pallet type id or code of this ecosystem") }
        check.check((1...DeclarationLimits.quantityMax).contains(body.quantity), "quantity",
                    "must be between 1 and \(DeclarationLimits.quantityMax)")
        let issue = Instant.parse(body.issueDate + "T00:00:00Z")
        if issue == nil { check.add("issueDate", "must be a date written YYYY-MM-DD") }
        var due = body.dueDate
        if let text = due {
            if Instant.parse(text + "T00:00:00Z") == nil { check.add("dueDate", "must be a date written YYYY-MM-DD") }
        } else if let issue {
            due = String(Instant(microsecondsSinceEpoch: issue.microsecondsSinceEpoch
                + Int64(ecosystem.noteDueDays) * 86_400_000_000).description.prefix(10))
        }
        if let serial = body.serial { check.check(!serial.isEmpty && serial.unicodeScalars.count <= 100, "serial", "must be 1 to 100 characters") }
        try check.throwIfInvalid()
        let note = try await store.issueNote(
            ecosystem: caller.ecosystem,
            terms: PalletNoteTerms(issuer: issuer!.id, holder: holder!.id, palletType: type!.id,
                                   quality: body.quality.map { QualityGrade(rawValue: $0.rawValue)! } ?? .a,
                                   quantity: body.quantity, serial: body.serial),
            issueDate: body.issueDate, dueDate: due!, by: caller.membership)
        return .created(.init(body: .json(.init(note))))
    }

    func redeemPalletNote(_ input: Operations.RedeemPalletNote.Input) async throws -> Operations.RedeemPalletNote.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let note = try await visibleNote(caller, input.path.noteId)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        // Checked again once the note is locked (`Store.redeemNote`).
        guard note.holder == caller.membership else {
            throw Problem.forbidden("The note's holder (who is owed) records what was returned against it.")
        }
        var check = Validator()
        check.check(body.quantity >= 1 && body.quantity <= DeclarationLimits.quantityMax, "quantity",
                    "must be between 1 and \(DeclarationLimits.quantityMax)")
        var movementID: UUID?
        if let text = body.movementId {
            // A movement the caller may not see is answered like one that does not exist.
            if let id = UUID(parsing: text), let movement = try await store.movement(ecosystem: caller.ecosystem, id: id),
               caller.role.readsWholeEcosystem || movement.involves(caller.membership),
               movement.kind == .return || movement.kind == .transfer || movement.kind == .delivery || movement.kind == .pickup {
                movementID = movement.id
            } else {
                check.add("movementId", "is not a movement of this ecosystem that returned pallets")
            }
        }
        try check.throwIfInvalid()
        let redeemed = try await store.redeemNote(ecosystem: caller.ecosystem, id: note.id, quantity: body.quantity,
                                                  movement: movementID, by: caller.membership)
        return .ok(.init(body: .json(.init(redeemed))))
    }

    func transferPalletNote(_ input: Operations.TransferPalletNote.Input) async throws -> Operations.TransferPalletNote.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let note = try await visibleNote(caller, input.path.noteId)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        // Checked again once the note is locked (`Store.proposeNoteTransfer`).
        guard note.holder == caller.membership else {
            throw Problem.forbidden("Only the note's holder hands it on.")
        }
        let (full, _) = try await directoryCache.get(caller.ecosystem, store: store)
        let directory = full.members[caller.membership].map { full.seen(by: $0) } ?? full
        guard let holder = directory.member(body.holderId), holder.active, holder.role.holdsPallets else {
            throw Problem.validation([FieldError("holderId", "is not an active member of this ecosystem")])
        }
        let proposed = try await store.proposeNoteTransfer(ecosystem: caller.ecosystem, id: note.id, to: holder.id,
                                                           by: caller.membership)
        return .ok(.init(body: .json(.init(proposed))))
    }

    func acceptPalletNoteTransfer(_ input: Operations.AcceptPalletNoteTransfer.Input) async throws
        -> Operations.AcceptPalletNoteTransfer.Output
    {
        let caller = try caller(in: input.path.ecosystemId)
        let note = try await visibleNote(caller, input.path.noteId)
        let accepted = try await store.acceptNoteTransfer(ecosystem: caller.ecosystem, id: note.id, by: caller.membership)
        return .ok(.init(body: .json(.init(accepted))))
    }

    func declinePalletNoteTransfer(_ input: Operations.DeclinePalletNoteTransfer.Input) async throws
        -> Operations.DeclinePalletNoteTransfer.Output
    {
        let caller = try caller(in: input.path.ecosystemId)
        let note = try await visibleNote(caller, input.path.noteId)
        let declined = try await store.declineNoteTransfer(ecosystem: caller.ecosystem, id: note.id, by: caller.membership)
        return .ok(.init(body: .json(.init(declined))))
    }

    // MARK: Statements

    func statementRequest(_ caller: Caller, party: String, counterparty: String?, from: String, until: String) async throws
        -> (UUID, UUID, Instant, Instant)
    {
        let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
        // Like an id in the path: a member unknown here, of another ecosystem, or a statement
        // between two other parties all answer the same 404, so that none of them tells the
        // caller that a member exists.
        guard let partyID = UUID(parsing: party), directory.members[partyID] != nil else { throw Problem.notFound("statement") }
        let shipper = directory.members.values.first { $0.role == .shipper }?.id
        let counterpartyID = counterparty.flatMap(UUID.init(parsing:)) ?? (counterparty == nil ? shipper : nil)
        guard let counterpartyID, directory.members[counterpartyID] != nil else { throw Problem.notFound("statement") }
        guard caller.role.readsWholeEcosystem || partyID == caller.membership || counterpartyID == caller.membership else {
            throw Problem.notFound("statement")
        }
        var check = Validator()
        let start = Instant.parse(from)
        let end = Instant.parse(until)
        if start == nil { check.add("from", "must be an RFC 3339 instant") }
        if end == nil { check.add("until", "must be an RFC 3339 instant") }
        if let start, let end, end.microsecondsSinceEpoch <= start.microsecondsSinceEpoch {
            check.add("until", "must be after from")
        }
        try check.throwIfInvalid()
        return (partyID, counterpartyID, start!, end!)
    }

    func getStatement(_ input: Operations.GetStatement.Input) async throws -> Operations.GetStatement.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let (party, counterparty, from, until) = try await statementRequest(
            caller, party: input.query.party, counterparty: input.query.counterparty, from: input.query.from, until: input.query.until)
        let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
        let statement = try await store.statement(ecosystem: caller.ecosystem, party: party, counterparty: counterparty,
                                                  from: from, until: until)
        let wantsCSV = input.headers.accept.contains { $0.contentType == .csv }
            && !input.headers.accept.contains { $0.contentType == .json }
        if wantsCSV {
            var text = CSV.line(["pallet_type", "quality", "opening", "movements", "closing"])
            for line in statement.lines {
                text += CSV.line([directory.palletTypes[line.palletType]?.code ?? line.palletType.lowercase, line.quality.rawValue,
                                  String(line.opening), String(line.movements), String(line.closing)])
            }
            text += CSV.line([])
            text += CSV.line(["movement_id", "kind", "event_time", "pallet_type", "quality", "amount", "confirmed"])
            for entry in statement.entries {
                text += CSV.line([entry.movement.lowercase, entry.kind.rawValue, entry.eventTime.description,
                                  directory.palletTypes[entry.palletType]?.code ?? entry.palletType.lowercase,
                                  entry.quality.rawValue, String(entry.amount), entry.confirmed ? "true" : "false"])
            }
            return .ok(.init(body: .csv(.init(text))))
        }
        return .ok(.init(body: .json(.init(
            partyId: party.lowercase, counterpartyId: counterparty.lowercase, from: from.description, until: until.description,
            hash: statement.hash,
            lines: statement.lines.map {
                .init(palletTypeId: $0.palletType.lowercase, palletTypeCode: directory.palletTypes[$0.palletType]?.code,
                      quality: .init(rawValue: $0.quality.rawValue)!, opening: $0.opening, movements: $0.movements,
                      closing: $0.closing)
            },
            entries: statement.entries.map {
                .init(movementId: $0.movement.lowercase, kind: .init(rawValue: $0.kind.rawValue)!,
                      eventTime: $0.eventTime.description, palletTypeId: $0.palletType.lowercase,
                      quality: .init(rawValue: $0.quality.rawValue)!, amount: $0.amount, confirmed: $0.confirmed)
            },
            answers: statement.answers.map(Components.Schemas.StatementAnswer.init)))))
    }

    func listIssuedStatements(_ input: Operations.ListIssuedStatements.Input) async throws -> Operations.ListIssuedStatements.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let issued = try await store.issuedStatements(ecosystem: caller.ecosystem,
                                                      party: caller.role.readsWholeEcosystem ? nil : caller.membership)
        return .ok(.init(body: .json(.init(items: issued.map { statement in
            let closing = (try? JSONSerialization.jsonObject(with: Data(statement.closing.utf8)) as? [[String: String]]) ?? []
            return .init(id: statement.id.lowercase, partyId: statement.party.lowercase,
                         counterpartyId: statement.counterparty.lowercase, from: statement.from, until: statement.until,
                         hash: statement.hash,
                         closing: closing.map { .init(palletTypeId: $0["palletTypeId"] ?? "", quality: $0["quality"] ?? "",
                                                      closing: $0["closing"] ?? "0") },
                         createdAt: statement.createdAt)
        }))))
    }

    func answerStatement(_ input: Operations.AnswerStatement.Input) async throws -> Operations.AnswerStatement.Output {
        let caller = try caller(in: input.path.ecosystemId)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let (party, counterparty, from, until) = try await statementRequest(
            caller, party: body.partyId, counterparty: body.counterpartyId, from: body.from, until: body.until)
        guard caller.membership == party || caller.membership == counterparty else {
            throw Problem.forbidden("Only the two parties of a statement answer it.")
        }
        let statement = try await store.statement(ecosystem: caller.ecosystem, party: party, counterparty: counterparty,
                                                  from: from, until: until)
        try requireMaxLength([("comment", body.comment, 2_000)])
        let answer = try await store.answerStatement(ecosystem: caller.ecosystem, statement: statement,
                                                     answer: body.answer.rawValue, comment: body.comment, by: caller.membership)
        return .created(.init(body: .json(.init(answer))))
    }
}

extension Components.Schemas.PalletNote {
    init(_ note: PalletNoteRecord) {
        self.init(id: note.id.lowercase, serial: note.serial, issuerId: note.issuer.lowercase, holderId: note.holder.lowercase,
                  pendingHolderId: note.pendingHolder?.lowercase, palletTypeId: note.palletType.lowercase, quality: .init(rawValue: note.quality.rawValue)!,
                  quantity: note.quantity, redeemedQuantity: note.redeemed, outstanding: note.outstanding,
                  issueDate: note.issueDate, dueDate: note.dueDate, movementId: note.movement?.lowercase,
                  state: .init(rawValue: note.state.rawValue)!)
    }
}

extension Components.Schemas.StatementAnswer {
    init(_ answer: PalletFlowStore.StatementAnswer) {
        self.init(id: answer.id.lowercase, answer: answer.answer, comment: answer.comment, statementHash: answer.statementHash,
                  answeredBy: answer.answeredBy.lowercase, answeredAt: answer.answeredAt)
    }
}
