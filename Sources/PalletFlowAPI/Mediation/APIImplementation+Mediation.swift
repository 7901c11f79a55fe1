import PalletFlowContract
import Foundation
import PalletFlowCore
import PalletFlowStore

/// Mediation sessions: creating and running them, their report, actions and resolutions.
extension APIImplementation {
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

extension Components.Schemas.Action {
    init(_ action: ActionRecord) {
        self.init(id: action.id.lowercase, sessionId: action.session.lowercase, description: action.description,
                  ownerId: action.owner.lowercase, dueDate: action.dueDate, status: .init(rawValue: action.status)!)
    }
}
