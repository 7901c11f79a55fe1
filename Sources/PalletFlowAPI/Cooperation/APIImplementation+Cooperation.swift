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
}

extension Components.Schemas.Clause {
    init(_ clause: CharterClause) {
        self.init(number: clause.number, text: clause.text, metric: clause.metric.map { .init(rawValue: $0.rawValue)! },
                  comparator: clause.comparator.map { .init(rawValue: $0.rawValue)! }, target: clause.target,
                  period: clause.period.flatMap { .init(rawValue: $0.rawValue) }, roles: clause.roles.map(Components.Schemas.Role.init))
    }
}
