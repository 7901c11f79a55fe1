import Foundation
import PalletFlowCore
import PalletFlowStore

/// The demo's cooperation: a published charter most carriers signed, a pending invitation,
/// a past mediation session with its actions, and the next one planned.
enum DemoCooperation {
    static func seed(_ store: Store, ecosystem: UUID) async throws {
        let members = try await store.members(ecosystem: ecosystem)
        guard let shipper = members.first(where: { $0.role == .shipper }),
              let coordinator = members.first(where: { $0.role == .coordinator })
        else { return }
        let carriers = members.filter { $0.role == .carrier }.sorted { $0.name < $1.name }
        let charter = try await store.createCharterDraft(ecosystem: ecosystem, title: "Charte d'engagement palettes 2026", clauses: [
            CharterClause(number: 1, text: "Every movement is declared within 24 hours.", metric: .declaredWithin24hShare,
                          comparator: .atLeast, target: 0.95, period: .month),
            CharterClause(number: 2, text: "At least 95% of the pallets issued each month come back.", metric: .restitutionRate,
                          comparator: .atLeast, target: 0.95, period: .month, roles: [.carrier]),
            CharterClause(number: 3, text: "Empties come back within 30 days on average.", metric: .rotationAverageDays,
                          comparator: .atMost, target: 30, period: .month, roles: [.carrier]),
            CharterClause(number: 4, text: "Declarations awaiting our answer are confirmed or contested within 48 hours.",
                          metric: .answeredWithin48hShare, comparator: .atLeast, target: 0.9, period: .month),
            CharterClause(number: 5, text: "Only pallets of grade B or better are exchanged at the dock.",
                          metric: .exchangedGradeBOrBetterShare, comparator: .atLeast, target: 1, period: .month),
            CharterClause(number: 6, text: "Balances are settled every quarter in a mediation session."),
        ], by: shipper.id)
        let published = try await store.publishCharter(ecosystem: ecosystem, version: charter, by: shipper.id)
        let signers = Array(carriers.prefix(carriers.count - 2)) + members.filter { $0.role == .warehouse || $0.role == .supplier }
        for member in signers {
            try await store.signCharter(ecosystem: ecosystem, version: charter, member: member.id,
                                        contentHash: published.contentHash ?? "", token: newID())
        }
        _ = try await store.createInvitation(ecosystem: ecosystem, name: "Transports Bretagne Sud", pgln: nil, role: .carrier,
                                             validDays: 14, by: shipper.id)
        // The carrier kit, given to every carrier; the newest ones are still working through it.
        let kit = try await store.createKit(ecosystem: ecosystem, name: "Kit de coopération transporteur", items: [
            KitItem(number: 1, kind: "charter", title: "Sign the commitment charter", fact: "charter_signed"),
            KitItem(number: 2, kind: "document", title: "Pallet exchange guide for drivers", url: "https://example.org/guide-palettes.pdf"),
            KitItem(number: 3, kind: "meeting", title: "Information meeting at the Saumur plant",
                    scheduledAt: store.nowDate.addingTimeInterval(-20 * 86_400)),
            KitItem(number: 4, kind: "training", title: "Dock counting and grading training",
                    scheduledAt: store.nowDate.addingTimeInterval(9 * 86_400)),
            KitItem(number: 5, kind: "contact", title: "Your pallet contact: Claire, +33 2 41 00 00 00"),
            KitItem(number: 6, kind: "checklist", title: "Connect your TMS to the PalletFlow API", fact: "first_declaration"),
            KitItem(number: 7, kind: "checklist", title: "Acknowledge your first monthly statement", fact: "first_statement_acknowledged"),
        ], by: shipper.id)
        for (index, carrier) in carriers.enumerated() {
            let assignment = try await store.assignKit(ecosystem: ecosystem, template: kit, member: carrier.id, by: shipper.id)
            let done = index < 4 ? [2, 3, 4, 5] : index < 7 ? [2, 3, 5] : [2]
            for item in done {
                try await store.recordKitProgress(ecosystem: ecosystem, assignment: assignment, item: item, done: true,
                                                  attended: item == 3 || item == 4 ? true : nil, note: nil, by: coordinator.id)
            }
        }
        let today = store.today
        let thisMonth = PeriodKind.month.start(of: today)
        let lastMonth = PeriodKind.month.start(of: thisMonth - 1)
        let participants = [shipper.id] + carriers.prefix(3).map(\.id)
        let past = try await store.createSession(
            ecosystem: ecosystem, title: "Médiation palettes: bilan du mois dernier",
            scheduledAt: Instant(microsecondsSinceEpoch: Int64(thisMonth + 2) * 86_400_000_000 + 9 * 3_600_000_000).date,
            periodStartDay: lastMonth, periodEndDay: thisMonth, agenda: "Balances, open disputes, charter compliance",
            participants: participants, by: coordinator.id)
        _ = try await store.addAction(ecosystem: ecosystem, session: past,
                                      description: "Count empties with the driver before signing the CMR",
                                      owner: carriers[0].id, dueDate: Instant.date(ofDay: today + 10), by: coordinator.id)
        let done = try await store.addAction(ecosystem: ecosystem, session: past,
                                             description: "Send the list of overdue pallet notes to each carrier",
                                             owner: shipper.id, dueDate: Instant.date(ofDay: today - 3), by: coordinator.id)
        try await store.updateAction(ecosystem: ecosystem, id: done.id, status: "done", by: shipper.id)
        try await store.updateSession(
            ecosystem: ecosystem, id: past, state: "closed",
            minutes: "Balances reviewed carrier by carrier; two disputes left for the dock counts.",
            reviewInside: "We confirm declarations too late.", reviewRelationship: "Frank and factual exchanges.",
            reviewPartner: "Drivers now count empties with the dock staff.", by: coordinator.id)
        _ = try await store.createSession(
            ecosystem: ecosystem, title: "Médiation palettes: ce mois-ci",
            scheduledAt: Instant(microsecondsSinceEpoch: Int64(today + 7) * 86_400_000_000 + 9 * 3_600_000_000).date,
            periodStartDay: thisMonth, periodEndDay: PeriodKind.month.end(startingAt: thisMonth),
            agenda: "Open disputes, restitution trend, actions of last session", participants: participants, by: coordinator.id)
    }
}
