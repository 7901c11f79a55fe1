import PalletFlowContract
import Foundation
import PalletFlowCore
import PalletFlowStore

extension APIImplementation {
    func listKits(_ input: Operations.ListKits.Input) async throws -> Operations.ListKits.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let kits = try await store.kits(ecosystem: caller.ecosystem)
        return .ok(.init(body: .json(.init(items: kits.map(Components.Schemas.Kit.init)))))
    }

    func createKit(_ input: Operations.CreateKit.Input) async throws -> Operations.CreateKit.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireShipper(caller, "make cooperation kits")
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        var check = Validator()
        let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
        check.check(!name.isEmpty && name.unicodeScalars.count <= 200, "name", "must be 1 to 200 characters")
        check.check(!body.items.isEmpty && body.items.count <= 100, "items", "must hold 1 to 100 items")
        var numbers = Set<Int>()
        for (index, item) in body.items.enumerated() {
            check.check((1...9_999).contains(item.number), "items[\(index)].number", "must be 1 to 9999")
            check.check(numbers.insert(item.number).inserted, "items[\(index)].number", "is used twice")
            check.check(!item.title.isEmpty && item.title.unicodeScalars.count <= 500, "items[\(index)].title", "must be 1 to 500 characters")
        }
        try check.throwIfInvalid()
        let items = body.items.map {
            KitItem(number: $0.number, kind: $0.kind.rawValue, title: $0.title, detail: $0.detail, url: $0.url,
                    scheduledAt: $0.scheduledAt, fact: $0.fact?.rawValue)
        }
        let id = try await store.createKit(ecosystem: caller.ecosystem, name: name, items: items, by: caller.membership)
        guard let kit = try await store.kits(ecosystem: caller.ecosystem).first(where: { $0.id == id }) else { throw Problem.notFound("kit") }
        return .created(.init(body: .json(.init(kit))))
    }

    func assignKit(_ input: Operations.AssignKit.Input) async throws -> Operations.AssignKit.Output {
        let caller = try caller(in: input.path.ecosystemId)
        guard let kitID = UUID(parsing: input.path.kitId),
              try await store.kits(ecosystem: caller.ecosystem).contains(where: { $0.id == kitID })
        else { throw Problem.notFound("kit") }
        try requireShipper(caller, "assign kits")
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
        guard let member = directory.member(body.memberId), member.role.holdsPallets, member.role != .shipper else {
            throw Problem.validation([FieldError("memberId", "is not a partner of this ecosystem")])
        }
        let id = try await store.assignKit(ecosystem: caller.ecosystem, template: kitID, member: member.id, by: caller.membership)
        guard let assignment = try await store.kitAssignments(ecosystem: caller.ecosystem, member: member.id).first(where: { $0.id == id })
        else { throw Problem.notFound("assignment") }
        return .created(.init(body: .json(.init(assignment))))
    }

    func listKitAssignments(_ input: Operations.ListKitAssignments.Input) async throws -> Operations.ListKitAssignments.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let assignments = try await store.kitAssignments(ecosystem: caller.ecosystem,
                                                         member: caller.role.readsWholeEcosystem ? nil : caller.membership)
        return .ok(.init(body: .json(.init(items: assignments.map(Components.Schemas.KitAssignment.init)))))
    }

    func recordKitProgress(_ input: Operations.RecordKitProgress.Input) async throws -> Operations.RecordKitProgress.Output {
        let caller = try caller(in: input.path.ecosystemId)
        guard let id = UUID(parsing: input.path.assignmentId),
              let assignment = try await store.kitAssignments(ecosystem: caller.ecosystem, member: nil).first(where: { $0.id == id }),
              caller.role.readsWholeEcosystem || assignment.member == caller.membership
        else { throw Problem.notFound("kit assignment") }
        guard let item = assignment.items.first(where: { $0.item.number == input.path.itemNo }) else { throw Problem.notFound("kit item") }
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let mediator = caller.role == .shipper || caller.role == .coordinator
        guard mediator || (assignment.member == caller.membership && item.item.kind == "checklist") else {
            throw Problem.forbidden("The shipper or coordinator records kit progress; a partner ticks its own checklist items.")
        }
        if item.item.fact != nil && !body.done {
            throw Problem.validation([FieldError("done", "this item completes itself from the facts (\(item.item.fact!))")])
        }
        try requireMaxLength([("note", body.note, 2_000)])
        try await store.recordKitProgress(ecosystem: caller.ecosystem, assignment: id, item: item.item.number, done: body.done,
                                          attended: body.attended, note: body.note, by: caller.membership)
        guard let updated = try await store.kitAssignments(ecosystem: caller.ecosystem, member: nil).first(where: { $0.id == id })
        else { throw Problem.notFound("kit assignment") }
        return .ok(.init(body: .json(.init(updated))))
    }

    func listWorkStatements(_ input: Operations.ListWorkStatements.Input) async throws -> Operations.ListWorkStatements.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let statements = try await store.workStatements(ecosystem: caller.ecosystem,
                                                        member: caller.role.readsWholeEcosystem ? nil : caller.membership)
        return .ok(.init(body: .json(.init(items: statements.map(Components.Schemas.WorkStatement.init)))))
    }

    func answerWorkStatement(_ input: Operations.AnswerWorkStatement.Input) async throws -> Operations.AnswerWorkStatement.Output {
        let caller = try caller(in: input.path.ecosystemId)
        guard let id = UUID(parsing: input.path.statementId),
              let statement = try await store.workStatements(ecosystem: caller.ecosystem, member: nil).first(where: { $0.id == id }),
              caller.role.readsWholeEcosystem || statement.member == caller.membership
        else { throw Problem.notFound("work statement") }
        guard statement.member == caller.membership else { throw Problem.forbidden("Only the partner it is addressed to answers it.") }
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        try requireMaxLength([("comment", body.comment, 5_000)])
        try await store.answerWorkStatement(ecosystem: caller.ecosystem, id: id, member: caller.membership,
                                            answer: body.answer.rawValue, comment: body.comment)
        guard let answered = try await store.workStatements(ecosystem: caller.ecosystem, member: caller.membership).first(where: { $0.id == id })
        else { throw Problem.notFound("work statement") }
        return .ok(.init(body: .json(.init(answered))))
    }
}

extension Components.Schemas.KitItem {
    init(_ item: KitItem) {
        self.init(number: item.number, kind: .init(rawValue: item.kind)!, title: item.title, detail: item.detail, url: item.url,
                  scheduledAt: item.scheduledAt, fact: item.fact.flatMap { .init(rawValue: $0) })
    }
}

extension Components.Schemas.Kit {
    init(_ kit: KitTemplate) {
        self.init(id: kit.id.lowercase, name: kit.name, items: kit.items.map(Components.Schemas.KitItem.init))
    }
}

extension Components.Schemas.KitAssignment {
    init(_ assignment: PalletFlowStore.KitAssignment) {
        self.init(id: assignment.id.lowercase, kitId: assignment.template.lowercase, kitName: assignment.templateName,
                  memberId: assignment.member.lowercase, completed: assignment.completed,
                  items: assignment.items.map {
                      .init(item: .init($0.item), done: $0.done, byFact: $0.byFact, attended: $0.attended, note: $0.note)
                  })
    }
}

extension Components.Schemas.WorkStatement {
    init(_ statement: PalletFlowStore.WorkStatement) {
        self.init(id: statement.id.lowercase, memberId: statement.member.lowercase,
                  periodStart: Instant.date(ofDay: statement.periodStartDay), periodEnd: Instant.date(ofDay: statement.periodEndDay),
                  movementsHandled: statement.movementsHandled, palletsIssued: statement.palletsIssued,
                  palletsRecovered: statement.palletsRecovered, losses: statement.losses,
                  lossesValueMinor: statement.lossesValueMinor, previousLossesValueMinor: statement.previousLossesValueMinor,
                  lossesAvoidedMinor: statement.lossesAvoidedMinor, disputesClosed: statement.disputesClosed,
                  answer: statement.answer.flatMap { .init(rawValue: $0) }, answerComment: statement.answerComment)
    }
}
