import PalletFlowContract
import Foundation
import PalletFlowCore
import PalletFlowStore

extension APIImplementation {
    // MARK: Prescription

    func createInvitation(_ input: Operations.CreateInvitation.Input) async throws -> Operations.CreateInvitation.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireShipper(caller, "invite partners")
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        var check = Validator()
        let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
        check.check(!name.isEmpty && name.unicodeScalars.count <= 200, "name", "must be 1 to 200 characters")
        check.check(body.role != .shipper, "role", "an ecosystem has one shipper")
        if let pgln = body.pgln { check.check(pgln.count == 13 && pgln.allSatisfy(\.isNumber), "pgln", "must be 13 digits") }
        let days = body.validDays ?? 14
        check.check((1...90).contains(days), "validDays", "must be between 1 and 90")
        try check.throwIfInvalid()
        let invitation = try await store.createInvitation(ecosystem: caller.ecosystem, name: name, pgln: body.pgln,
                                                          role: Role(body.role), validDays: days, by: caller.membership)
        return .created(.init(body: .json(.init(id: invitation.id.lowercase, code: invitation.code, expiresAt: invitation.expiresAt))))
    }

    func acceptInvitation(_ input: Operations.AcceptInvitation.Input) async throws -> Operations.AcceptInvitation.Output {
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let accepted = try await store.acceptInvitation(code: body.code)
        directoryCache.invalidate(accepted.ecosystem)
        return .created(.init(body: .json(.init(ecosystemId: accepted.ecosystem.lowercase, memberId: accepted.member.id.lowercase,
                                                token: accepted.token.text))))
    }

    func getFunnel(_ input: Operations.GetFunnel.Input) async throws -> Operations.GetFunnel.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireReader(caller, "The funnel")
        let entries = try await store.funnel(ecosystem: caller.ecosystem)
        var counts: [String: Int] = [:]
        for stage in FunnelStage.allCases { counts[stage.rawValue] = 0 }
        for entry in entries { counts[entry.stage.rawValue, default: 0] += 1 }
        return .ok(.init(body: .json(.init(
            counts: .init(additionalProperties: counts),
            entries: entries.map {
                .init(memberId: $0.member?.lowercase, invitationId: $0.invitation?.lowercase, name: $0.name, role: .init($0.role),
                      stage: .init(rawValue: $0.stage.rawValue)!, since: $0.since)
            }))))
    }

    // MARK: Charters

    func charterOutput(_ record: CharterVersionRecord, caller: Caller) -> Components.Schemas.Charter {
        .init(id: record.id.lowercase, version: record.version, title: record.title, status: .init(rawValue: record.status)!,
              contentHash: record.contentHash, publishedAt: record.publishedAt,
              clauses: record.clauses.map(Components.Schemas.Clause.init),
              signatures: record.signatures.filter { caller.role.readsWholeEcosystem || $0.member == caller.membership }.map {
                  .init(memberId: $0.member.lowercase, signedAt: $0.signedAt, contentHash: $0.contentHash)
              })
    }

    func listCharters(_ input: Operations.ListCharters.Input) async throws -> Operations.ListCharters.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let charters = try await store.charters(ecosystem: caller.ecosystem)
            .filter { caller.role.administersEcosystem || $0.status == "published" }
        return .ok(.init(body: .json(.init(items: charters.map { charterOutput($0, caller: caller) }))))
    }

    func createCharterDraft(_ input: Operations.CreateCharterDraft.Input) async throws -> Operations.CreateCharterDraft.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireShipper(caller, "write the charter")
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        var check = Validator()
        let title = body.title.trimmingCharacters(in: .whitespacesAndNewlines)
        check.check(!title.isEmpty && title.unicodeScalars.count <= 200, "title", "must be 1 to 200 characters")
        check.check(!body.clauses.isEmpty && body.clauses.count <= 100, "clauses", "must hold 1 to 100 clauses")
        var numbers = Set<Int>()
        var clauses: [CharterClause] = []
        for (index, clause) in body.clauses.enumerated() {
            let path = "clauses[\(index)]"
            check.check((1...9_999).contains(clause.number), path + ".number", "must be 1 to 9999")
            check.check(numbers.insert(clause.number).inserted, path + ".number", "is used twice")
            check.check(!clause.text.isEmpty && clause.text.unicodeScalars.count <= 5_000, path + ".text", "must be 1 to 5000 characters")
            let parts = [clause.metric != nil, clause.comparator != nil, clause.target != nil]
            check.check(parts.allSatisfy { $0 } || parts.allSatisfy { !$0 }, path,
                        "a measurable clause gives metric, comparator and target together")
            clauses.append(CharterClause(
                number: clause.number, text: clause.text, metric: clause.metric.flatMap { CharterMetric(rawValue: $0.rawValue) },
                comparator: clause.comparator.flatMap { ClauseComparator(rawValue: $0.rawValue) }, target: clause.target,
                period: clause.metric == nil ? nil : (clause.period.flatMap { PeriodKind(rawValue: $0.rawValue) } ?? .month),
                roles: (clause.roles ?? []).map(Role.init)))
        }
        try check.throwIfInvalid()
        let id = try await store.createCharterDraft(ecosystem: caller.ecosystem, title: title, clauses: clauses, by: caller.membership)
        guard let record = try await store.charters(ecosystem: caller.ecosystem).first(where: { $0.id == id }) else {
            throw Problem.notFound("charter")
        }
        return .created(.init(body: .json(charterOutput(record, caller: caller))))
    }

    func visibleCharter(_ caller: Caller, _ id: String) async throws -> CharterVersionRecord {
        guard let id = UUID(parsing: id), let record = try await store.charters(ecosystem: caller.ecosystem).first(where: { $0.id == id }),
              caller.role.administersEcosystem || record.status == "published"
        else { throw Problem.notFound("charter") }
        return record
    }

    func publishCharter(_ input: Operations.PublishCharter.Input) async throws -> Operations.PublishCharter.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let record = try await visibleCharter(caller, input.path.charterId)
        try requireShipper(caller, "publish the charter")
        let published = try await store.publishCharter(ecosystem: caller.ecosystem, version: record.id, by: caller.membership)
        return .ok(.init(body: .json(charterOutput(published, caller: caller))))
    }

    func signCharter(_ input: Operations.SignCharter.Input) async throws -> Operations.SignCharter.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let record = try await visibleCharter(caller, input.path.charterId)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        guard caller.role != .coordinator else { throw Problem.forbidden("The coordinator animates the charter; it does not sign it.") }
        try await store.signCharter(ecosystem: caller.ecosystem, version: record.id, member: caller.membership,
                                    contentHash: body.contentHash, token: caller.token)
        let signed = try await visibleCharter(caller, input.path.charterId)
        return .ok(.init(body: .json(charterOutput(signed, caller: caller))))
    }

    func listCompliance(_ input: Operations.ListCompliance.Input) async throws -> Operations.ListCompliance.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let evaluations = try await store.clauseEvaluations(ecosystem: caller.ecosystem,
                                                            member: caller.role.readsWholeEcosystem ? nil : caller.membership)
        return .ok(.init(body: .json(.init(items: evaluations.map {
            .init(charterId: $0.version.lowercase, clause: $0.clause, memberId: $0.member.lowercase,
                  periodStart: Instant.date(ofDay: $0.periodStartDay), result: .init(rawValue: $0.result.rawValue)!,
                  measured: $0.measured)
        }))))
    }

    // MARK: Mediation sessions

    /// A session as `caller` may read it: a partner learns no other partner's id.
    func sessionOutput(_ session: SessionRecord, for caller: Caller) async throws -> Components.Schemas.Session {
        var participants = session.participants
        if !caller.role.readsWholeEcosystem {
            let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
            participants = participants.filter { id in
                id == caller.membership || directory.members[id].map { $0.role.readsWholeEcosystem } ?? false
            }
        }
        return .init(id: session.id.lowercase, title: session.title, state: .init(rawValue: session.state)!, scheduledAt: session.scheduledAt,
              periodStart: Instant.date(ofDay: session.periodStartDay), periodEnd: Instant.date(ofDay: session.periodEndDay),
              agenda: session.agenda, minutes: session.minutes, reviewInside: session.reviewInside,
              reviewRelationship: session.reviewRelationship, reviewPartner: session.reviewPartner,
              previousSessionId: session.previousSession?.lowercase, participantIds: participants.map(\.lowercase))
    }

    /// A session the caller may see (mediators, or a participant), or 404.
    func visibleSession(_ caller: Caller, _ id: String) async throws -> SessionRecord {
        guard let id = UUID(parsing: id), let session = try await store.session(ecosystem: caller.ecosystem, id: id),
              caller.role.readsWholeEcosystem || session.participants.contains(caller.membership)
        else { throw Problem.notFound("session") }
        return session
    }

    func requireMediator(_ caller: Caller) throws {
        guard caller.role == .coordinator || caller.role == .shipper else {
            throw Problem.forbidden("The coordinator or the shipper runs mediation sessions.")
        }
    }

    func listSessions(_ input: Operations.ListSessions.Input) async throws -> Operations.ListSessions.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let sessions = try await store.sessions(ecosystem: caller.ecosystem)
            .filter { caller.role.readsWholeEcosystem || $0.participants.contains(caller.membership) }
        var items: [Components.Schemas.Session] = []
        for session in sessions { items.append(try await sessionOutput(session, for: caller)) }
        return .ok(.init(body: .json(.init(items: items))))
    }

    func createSession(_ input: Operations.CreateSession.Input) async throws -> Operations.CreateSession.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireMediator(caller)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
        var check = Validator()
        let title = body.title.trimmingCharacters(in: .whitespacesAndNewlines)
        check.check(!title.isEmpty && title.unicodeScalars.count <= 200, "title", "must be 1 to 200 characters")
        let scheduled = Instant.parse(body.scheduledAt)
        if scheduled == nil { check.add("scheduledAt", "must be an RFC 3339 instant") }
        let start = Instant.parse(body.periodStart + "T00:00:00Z")?.day
        let end = Instant.parse(body.periodEnd + "T00:00:00Z")?.day
        if start == nil { check.add("periodStart", "must be a date written YYYY-MM-DD") }
        if end == nil { check.add("periodEnd", "must be a date written YYYY-MM-DD") }
        if let start, let end { check.check(end > start && end - start <= 3_660, "periodEnd", "must be after periodStart, within 10 years") }
        var participants: [UUID] = []
        for (index, text) in body.participantIds.enumerated() {
            if let member = directory.member(text) { participants.append(member.id) } else {
                check.add("participantIds[\(index)]", "is not a member of this ecosystem")
            }
        }
        check.check(!participants.isEmpty, "participantIds", "must name at least one partner")
        try check.throwIfInvalid()
        let id = try await store.createSession(ecosystem: caller.ecosystem, title: title, scheduledAt: scheduled!.date,
                                               periodStartDay: start!, periodEndDay: end!, agenda: body.agenda,
                                               participants: participants, by: caller.membership)
        guard let session = try await store.session(ecosystem: caller.ecosystem, id: id) else { throw Problem.notFound("session") }
        return .created(.init(body: .json(try await sessionOutput(session, for: caller))))
    }

    func updateSession(_ input: Operations.UpdateSession.Input) async throws -> Operations.UpdateSession.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let session = try await visibleSession(caller, input.path.sessionId)
        try requireMediator(caller)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        try requireMaxLength([("minutes", body.minutes, 20_000), ("reviewInside", body.reviewInside, 5_000),
                              ("reviewRelationship", body.reviewRelationship, 5_000), ("reviewPartner", body.reviewPartner, 5_000)])
        try await store.updateSession(ecosystem: caller.ecosystem, id: session.id, state: body.state?.rawValue, minutes: body.minutes,
                                      reviewInside: body.reviewInside, reviewRelationship: body.reviewRelationship,
                                      reviewPartner: body.reviewPartner, by: caller.membership)
        return .ok(.init(body: .json(try await sessionOutput(try await visibleSession(caller, input.path.sessionId), for: caller))))
    }

    func getSessionReport(_ input: Operations.GetSessionReport.Input) async throws -> Operations.GetSessionReport.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let session = try await visibleSession(caller, input.path.sessionId)
        guard let ecosystem = try await store.ecosystem(caller.ecosystem) else { throw Problem.notFound("ecosystem") }
        let accepts = input.headers.accept.map(\.contentType)
        let html = accepts.contains(.html) && !accepts.contains(.json)
        let report = try await MediationReport.build(store: readStore, ecosystem: ecosystem, session: session, visibleTo: caller,
                                                     listingDiscrepancies: html)
        if html { return .ok(.init(body: .html(.init(report.html)))) }
        if accepts.contains(.csv) && !accepts.contains(.json) { return .ok(.init(body: .csv(.init(report.csv)))) }
        let sessionShown = try await sessionOutput(session, for: caller)
        let aggregates = report.aggregate.map { (aggregate: PeerAggregate) -> Components.Schemas.PeerAggregate in
            .init(partners: aggregate.partners, issued: aggregate.issued, returned: aggregate.returned,
                  restitutionRate: aggregate.restitutionRate, restitutionFirstQuartile: aggregate.restitutionFirstQuartile,
                  restitutionMedian: aggregate.restitutionMedian, restitutionThirdQuartile: aggregate.restitutionThirdQuartile)
        }
        let participants = report.participants.map { (participant: MediationReport.Participant) -> Components.Schemas.ReportParticipant in
            .init(memberId: participant.member.id.lowercase, name: participant.member.name, role: .init(participant.member.role),
                      stage: participant.stage?.rawValue,
                      balances: participant.balances.map { .init(palletType: $0.code, confirmed: $0.confirmed, pending: $0.pending) },
                      issued: participant.current?.issued, returned: participant.current?.returned,
                      restitutionRate: participant.current?.measure(.restitutionRate),
                      previousRestitutionRate: participant.previous?.measure(.restitutionRate),
                      lossRate: participant.current?.measure(.lossRate), previousLossRate: participant.previous?.measure(.lossRate),
                      rotationAverageDays: participant.current?.measure(.rotationAverageDays),
                      previousRotationAverageDays: participant.previous?.measure(.rotationAverageDays),
                      openDiscrepancies: participant.openDiscrepancyCount, overdueNotes: participant.overdueNotes.count,
                      overdueNotesValueMinor: participant.overdueNotes.reduce(Int64(0)) { $0 + ($1.valueMinor ?? 0) },
                      compliance: participant.compliance.map { .init(clause: $0.clause.number, result: $0.result.rawValue, measured: $0.measured) })
        }
        return .ok(.init(body: .json(.init(
            session: sessionShown, participants: participants, aggregates: aggregates,
            previousActions: report.previousActions.map(Components.Schemas.Action.init),
            actions: report.actions.map(Components.Schemas.Action.init),
            generatedAt: report.generatedAt.rfc3339(keepingOffset: false)))))
    }

    func addSessionAction(_ input: Operations.AddSessionAction.Input) async throws -> Operations.AddSessionAction.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let session = try await visibleSession(caller, input.path.sessionId)
        try requireMediator(caller)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
        var check = Validator()
        let description = body.description.trimmingCharacters(in: .whitespacesAndNewlines)
        check.check(!description.isEmpty && description.unicodeScalars.count <= 2_000, "description", "must be 1 to 2000 characters")
        let owner = directory.member(body.ownerId)
        if owner == nil { check.add("ownerId", "is not a member of this ecosystem") }
        check.check(Instant.parse(body.dueDate + "T00:00:00Z") != nil, "dueDate", "must be a date written YYYY-MM-DD")
        try check.throwIfInvalid()
        guard session.state != "closed" else { throw Problem.conflict("The session is closed; its record is final.") }
        let action = try await store.addAction(ecosystem: caller.ecosystem, session: session.id, description: description,
                                               owner: owner!.id, dueDate: body.dueDate, by: caller.membership)
        return .created(.init(body: .json(.init(action))))
    }

    func updateSessionAction(_ input: Operations.UpdateSessionAction.Input) async throws -> Operations.UpdateSessionAction.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let session = try await visibleSession(caller, input.path.sessionId)
        // A partner sees its own actions and the shipper's and coordinator's, never another
        // partner's (the report leaves them out): those answer like an action that does not exist.
        let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
        guard let id = UUID(parsing: input.path.actionId),
              let action = try await store.actions(ecosystem: caller.ecosystem, session: session.id).first(where: { $0.id == id }),
              caller.role.readsWholeEcosystem || action.owner == caller.membership
                || directory.members[action.owner]?.role.readsWholeEcosystem == true
        else { throw Problem.notFound("action") }
        guard caller.role == .coordinator || caller.role == .shipper || action.owner == caller.membership else {
            throw Problem.forbidden("The coordinator, the shipper or the action's owner updates it.")
        }
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        try await store.updateAction(ecosystem: caller.ecosystem, id: id, status: body.status.rawValue, by: caller.membership)
        var updated = action
        updated.status = body.status.rawValue
        return .ok(.init(body: .json(.init(updated))))
    }

    func resolveAtSession(_ input: Operations.ResolveAtSession.Input) async throws -> Operations.ResolveAtSession.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let session = try await visibleSession(caller, input.path.sessionId)
        try requireMediator(caller)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let movement = try await visibleMovement(caller, body.movementId)
        let resolution = Store.Resolution(rawValue: body.accept.rawValue)!
        let agreed = body.lines?.map { CounterLine(lineNo: $0.lineNo, quantity: $0.quantity, exchangedQuantity: $0.exchangedQuantity ?? 0) }
        if resolution == .agreed {
            try Self.checkCounts(agreed ?? [], of: movement, what: "the agreed counts")
        }
        let record = try await store.resolve(
            ecosystem: caller.ecosystem, movement: movement.id, by: caller.membership, resolution: resolution,
            agreedLines: agreed,
            note: body.note ?? "Decided at \(session.title)")
        try await store.recordResolution(ecosystem: caller.ecosystem, session: session.id, discrepancy: record.id)
        return .ok(.init(body: .json(.init(record, movement: movement))))
    }
}

extension Components.Schemas.Clause {
    init(_ clause: CharterClause) {
        self.init(number: clause.number, text: clause.text, metric: clause.metric.map { .init(rawValue: $0.rawValue)! },
                  comparator: clause.comparator.map { .init(rawValue: $0.rawValue)! }, target: clause.target,
                  period: clause.period.flatMap { .init(rawValue: $0.rawValue) }, roles: clause.roles.map(Components.Schemas.Role.init))
    }
}

extension Components.Schemas.Action {
    init(_ action: ActionRecord) {
        self.init(id: action.id.lowercase, sessionId: action.session.lowercase, description: action.description,
                  ownerId: action.owner.lowercase, dueDate: action.dueDate, status: .init(rawValue: action.status)!)
    }
}
