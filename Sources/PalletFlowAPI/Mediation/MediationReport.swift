import Foundation
import PalletFlowCore
import PalletFlowStore

/// The mediation report: the facts each participant brings to the table, built from the
/// ledger, the indicators, the charter evaluations, the funnel and the previous session.
struct MediationReport: Sendable {
    struct Participant: Sendable {
        var member: MemberRecord
        var stage: FunnelStage?
        /// Per pallet type code: what the participant owes the shipper, confirmed and pending.
        var balances: [(code: String, confirmed: Int64, pending: Int64)]
        /// Listed only for the HTML report; the JSON and CSV reports give the count.
        var openDiscrepancies: [(discrepancy: DiscrepancyRecord, movement: PostedMovement)]
        var openDiscrepancyCount: Int
        var overdueNotes: [(note: PalletNoteRecord, valueMinor: Int64?)]
        var current: PeriodTotals?
        var previous: PeriodTotals?
        /// Month start day -> totals, for the trend charts (last 12 months).
        var months: [Int: PeriodTotals]
        var aging: [Int64]
        var compliance: [(clause: CharterClause, result: ClauseResult, measured: Double?, periodStartDay: Int)]
    }

    var session: SessionRecord
    var ecosystem: EcosystemRecord
    var shipper: MemberRecord
    var participants: [Participant]
    var previousActions: [ActionRecord]
    var actions: [ActionRecord]
    var memberNames: [UUID: String]
    var typeCodes: [UUID: String]
    var generatedAt: Instant
    /// The ecosystem's totals and spread of restitution over the period, without names;
    /// nil for a partner when too few partners had pallets issued to hide each one's figures.
    var aggregate: PeerAggregate?
    /// Whether the reader sees every participant (the shipper, the coordinator) or only
    /// its own section (a partner).
    var mediatorView: Bool

    /// `listingDiscrepancies`: read each open discrepancy and the movement it contests (the
    /// HTML report lists them); otherwise only count them, in SQL (a busy carrier may have
    /// thousands).
    static func build(store: Store, ecosystem: EcosystemRecord, session: SessionRecord, visibleTo caller: Caller,
                      listingDiscrepancies: Bool) async throws -> MediationReport
    {
        let id = ecosystem.id
        let members = try await store.members(ecosystem: id)
        guard let shipper = members.first(where: { $0.role == .shipper }) else { throw StoreError.notFound("shipper") }
        let names = Dictionary(uniqueKeysWithValues: members.map { ($0.id, $0.name) })
        // The shipper and the coordinator see every participant; a partner sees its own
        // section only, and of the others the anonymous aggregates (`PeerAggregate`).
        let mediatorView = caller.role.readsWholeEcosystem
        let seen = members.filter { member in
            session.participants.contains(member.id) && member.role != .shipper && member.role != .coordinator
                && (mediatorView || member.id == caller.membership)
        }
        let partners = seen.map(\.id)
        let nonPartners = Set(members.filter { $0.role == .shipper || $0.role == .coordinator }.map(\.id))
        /// Actions a reader may see: all for a mediator; for a partner its own and those of
        /// the shipper and the coordinator, never another partner's.
        @Sendable func visible(_ actions: [ActionRecord]) -> [ActionRecord] {
            mediatorView ? actions : actions.filter { $0.owner == caller.membership || nonPartners.contains($0.owner) }
        }
        // Independent reads, sent together on the pool's connections; the indicator reads are
        // restricted to the participants, so the report costs what their facts cost, not
        // what the whole ecosystem's do (docs/performance.md, B6).
        async let periodRead = PeriodFacts.read(store: store, ecosystem: id, session: session, partners: partners)
        async let everyoneRead = store.monthTotals(ecosystem: id, startDay: session.periodStartDay,
                                                   endDay: session.periodEndDay, partners: nil)
        async let actionsRead = store.actions(ecosystem: id, session: session.id)
        let previousSession = session.previousSession
        async let previousActionsRead: [ActionRecord] = {
            guard let previousSession else { return [] }
            return try await store.actions(ecosystem: id, session: previousSession)
        }()
        async let factsRead = ParticipantFacts.read(store: store, ecosystem: id, partners: partners,
                                                    listingDiscrepancies: listingDiscrepancies)
        let period = try await periodRead
        let facts = try await factsRead
        let participants = seen.compactMap { member in
            facts[member.id].map { period.participant(member, facts: $0, owingTo: shipper,
                                                      listingDiscrepancies: listingDiscrepancies) }
        }
        let everyone = try await everyoneRead.values.compactMap { PeriodTotals.combine($0) }
        let aggregate = PeerAggregate(everyone.map { ($0.issued, $0.returned) })
        return MediationReport(session: session, ecosystem: ecosystem, shipper: shipper, participants: participants,
                               previousActions: visible(try await previousActionsRead), actions: visible(try await actionsRead),
                               memberNames: names, typeCodes: period.codes, generatedAt: store.now,
                               aggregate: mediatorView || aggregate.shownToPartners ? aggregate : nil,
                               mediatorView: mediatorView)
    }

    /// What the report reads of the ecosystem for its participants' sections: pallet
    /// types, funnel, the published charter's evaluations and the indicator totals.
    struct PeriodFacts: Sendable {
        var codes: [UUID: String]
        var values: [UUID: Int64?]
        var funnel: [FunnelEntry]
        var charter: CharterVersionRecord?
        var evaluations: [ClauseEvaluation]
        var thisPeriod: [UUID: [Int: PeriodTotals]]
        var previous: [UUID: [Int: PeriodTotals]]
        var trend: [UUID: [Int: PeriodTotals]]
        var toDate: [UUID: [Int64]]

        static func read(store: Store, ecosystem id: UUID, session: SessionRecord, partners: [UUID]) async throws
            -> PeriodFacts
        {
            // The previous period: as many months (or days) just before this one.
            let length = session.periodEndDay - session.periodStartDay
            let previousStart = PeriodKind.month.start(of: session.periodStartDay) == session.periodStartDay
                ? PeriodKind.month.start(of: session.periodStartDay - max(1, length - 3)) : session.periodStartDay - length
            async let typesRead = store.palletTypes(ecosystem: id)
            async let funnelRead = store.funnel(ecosystem: id)
            async let chartersRead = store.charters(ecosystem: id)
            async let evaluationsRead = store.clauseEvaluations(ecosystem: id, members: partners)
            async let thisPeriodRead = store.monthTotals(ecosystem: id, startDay: session.periodStartDay,
                                                         endDay: session.periodEndDay, partners: partners)
            async let previousRead = store.monthTotals(ecosystem: id, startDay: previousStart, endDay: session.periodStartDay,
                                                       partners: partners)
            async let trendRead = store.monthTotals(ecosystem: id, startDay: session.periodEndDay - 366,
                                                    endDay: session.periodEndDay, partners: partners)
            async let agingRead = store.agingToDate(ecosystem: id, partners: partners)
            let types = try await typesRead
            let (funnel, charters, evaluations) = try await (funnelRead, chartersRead, evaluationsRead)
            let (thisPeriod, previous, trend, toDate) = try await (thisPeriodRead, previousRead, trendRead, agingRead)
            return PeriodFacts(
                codes: Dictionary(uniqueKeysWithValues: types.map { ($0.id, $0.code) }),
                values: Dictionary(uniqueKeysWithValues: types.map { ($0.id, $0.unitValueMinor) }),
                funnel: funnel, charter: charters.last { $0.status == "published" }, evaluations: evaluations,
                thisPeriod: thisPeriod, previous: previous, trend: trend, toDate: toDate)
        }

        /// One participant's section: what it owes the shipper per pallet type, its open
        /// discrepancies, overdue notes, indicators and its latest result per charter clause.
        func participant(_ member: MemberRecord, facts read: ParticipantFacts, owingTo shipper: MemberRecord,
                         listingDiscrepancies: Bool) -> Participant {
            var owed: [UUID: (Int64, Int64)] = [:]
            for balance in read.balances where balance.key.party == member.id && balance.key.counterparty == shipper.id {
                let previous = owed[balance.key.palletType] ?? (0, 0)
                owed[balance.key.palletType] = (previous.0 + balance.confirmed, previous.1 + balance.pending)
            }
            let open: [(DiscrepancyRecord, PostedMovement)] = read.discrepancies.compactMap { discrepancy in
                guard let movement = read.disputed[discrepancy.movement], movement.involves(member.id) else { return nil }
                return (discrepancy, movement)
            }
            let latest = Dictionary(
                evaluations.filter { $0.member == member.id && $0.version == charter?.id }.map { ($0.clause, $0) },
                uniquingKeysWith: { $0.periodStartDay >= $1.periodStartDay ? $0 : $1 })
            return Participant(
                member: member, stage: funnel.first { $0.member == member.id }?.stage,
                balances: owed.map { (codes[$0.key] ?? "?", $0.value.0, $0.value.1) }.sorted { $0.code < $1.code },
                openDiscrepancies: open, openDiscrepancyCount: listingDiscrepancies ? open.count : read.openCount,
                overdueNotes: read.notes.filter { $0.issuer == member.id && $0.state == .overdue }.map { note in
                    let unit: Int64? = values[note.palletType] ?? nil
                    return (note: note, valueMinor: unit.map { $0 * note.outstanding })
                },
                current: PeriodTotals.combine(thisPeriod[member.id] ?? [:]),
                previous: PeriodTotals.combine(previous[member.id] ?? [:]),
                months: trend[member.id] ?? [:], aging: toDate[member.id] ?? [0, 0, 0, 0],
                compliance: (charter?.clauses ?? []).filter(\.isMeasurable).compactMap { clause in
                    guard let evaluation = latest[clause.number] else { return nil }
                    return (clause, evaluation.result, evaluation.measured, evaluation.periodStartDay)
                })
        }
    }


    /// What the report reads about one participant from the ledger: its balances, the
    /// overdue pallet notes it issued, its open discrepancies and the movements they contest.
    struct ParticipantFacts: Sendable {
        var balances: [AccountBalance]
        var notes: [PalletNoteRecord]
        var discrepancies: [DiscrepancyRecord] = []
        var disputed: [UUID: PostedMovement] = [:]
        var openCount = 0

        static func read(store: Store, ecosystem: UUID, party: UUID, listingDiscrepancies: Bool) async throws
            -> ParticipantFacts
        {
            async let balances = store.balances(ecosystem: ecosystem, classes: [.owed], party: party, asOf: nil)
            async let notes = store.overdueNotes(ecosystem: ecosystem, issuer: party)
            guard listingDiscrepancies else {
                async let count = store.openDiscrepancyCount(ecosystem: ecosystem, party: party)
                return ParticipantFacts(balances: try await balances, notes: try await notes, openCount: try await count)
            }
            let discrepancies = try await store.discrepancies(ecosystem: ecosystem, openOnly: true, party: party)
            async let disputed = store.movements(ecosystem: ecosystem, ids: discrepancies.map(\.movement))
            return ParticipantFacts(balances: try await balances, notes: try await notes, discrepancies: discrepancies,
                                    disputed: try await disputed)
        }

        /// Every partner's facts, read side by side.
        static func read(store: Store, ecosystem: UUID, partners: [UUID], listingDiscrepancies: Bool) async throws
            -> [UUID: ParticipantFacts]
        {
            try await withThrowingTaskGroup(of: (UUID, ParticipantFacts).self) { group in
                for partner in partners {
                    group.addTask {
                        (partner, try await ParticipantFacts.read(store: store, ecosystem: ecosystem, party: partner,
                                                                  listingDiscrepancies: listingDiscrepancies))
                    }
                }
                var facts: [UUID: ParticipantFacts] = [:]
                while let (partner, read) = try await group.next() { facts[partner] = read }
                return facts
            }
        }
    }

    // MARK: Renderings

    func percent(_ value: Double?) -> String { value.map { String(format: "%.1f%%", $0 * 100) } ?? "n/a" }

    var csv: String {
        var text = CSV.line(["participant", "role", "stage", "pallet_type", "confirmed_owed", "pending_owed", "issued", "returned",
                             "restitution", "previous_restitution", "loss_rate", "open_discrepancies", "overdue_notes"])
        for participant in participants {
            let rows = participant.balances.isEmpty ? [("", Int64(0), Int64(0))] : participant.balances
            for balance in rows {
                text += CSV.line([participant.member.name, participant.member.role.rawValue, participant.stage?.rawValue ?? "",
                                  balance.0, String(balance.1), String(balance.2),
                                  String(participant.current?.issued ?? 0), String(participant.current?.returned ?? 0),
                                  percent(participant.current?.measure(.restitutionRate)),
                                  percent(participant.previous?.measure(.restitutionRate)),
                                  percent(participant.current?.measure(.lossRate)),
                                  String(participant.openDiscrepancyCount), String(participant.overdueNotes.count)])
            }
        }
        // The ecosystem's anonymous figures: its total, then the spread of its partners' rates.
        if let aggregate {
            let label = "ecosystem (\(aggregate.partners) partners)"
            func row(_ name: String, issued: String = "", returned: String = "", _ rate: Double?) -> String {
                CSV.line([name, "", "", "", "", "", issued, returned, percent(rate), "", "", "", ""])
            }
            text += row(label + " total", issued: String(aggregate.issued), returned: String(aggregate.returned),
                        aggregate.restitutionRate)
            text += row(label + " restitution first quartile", aggregate.restitutionFirstQuartile)
            text += row(label + " restitution median", aggregate.restitutionMedian)
            text += row(label + " restitution third quartile", aggregate.restitutionThirdQuartile)
        }
        return text
    }

    var html: String {
        func escape(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        var page = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>\(escape(session.title))</title>
            <style>
            body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:60rem;color:#1d2733;line-height:1.45}
            h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;border-bottom:2px solid #1f6f8b;padding-bottom:.2rem;margin-top:2rem}
            h3{font-size:1.05rem;margin-bottom:.3rem}table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
            th,td{border:1px solid #c9d3dd;padding:.3rem .5rem;text-align:left;font-size:.92rem}th{background:#eef3f7}
            td.n{text-align:right;font-variant-numeric:tabular-nums}.meta{color:#52606d}.met{color:#1b7f3b}.not_met{color:#b42318}
            figure{margin:.5rem 0 1rem}figcaption{font-size:.85rem;color:#52606d}
            @media print{body{margin:0;max-width:none}h2{page-break-before:auto}section{page-break-inside:avoid}}
            </style></head><body>
            <header><h1>\(escape(session.title))</h1>
            <p class="meta">\(escape(ecosystem.name)) · mediation session \(escape(session.state)) · scheduled
            \(escape(Instant(session.scheduledAt).rfc3339(keepingOffset: false))) · period \(Instant.date(ofDay: session.periodStartDay))
            to \(Instant.date(ofDay: session.periodEndDay - 1)) · generated \(escape(generatedAt.rfc3339(keepingOffset: false)))</p>
            </header>
            """
        if let agenda = session.agenda { page += "<section><h2>Agenda</h2><p>\(escape(agenda))</p></section>" }
        page += "<section><h2>Actions agreed at the previous session</h2>"
        if previousActions.isEmpty {
            page += "<p>No previous session, or no action agreed there.</p>"
        } else {
            page += "<table><thead><tr><th>Action</th><th>Owner</th><th>Due</th><th>Status</th></tr></thead><tbody>"
            for action in previousActions {
                page += "<tr><td>\(escape(action.description))</td><td>\(escape(memberNames[action.owner] ?? "?"))</td><td>\(action.dueDate)</td><td>\(action.status)</td></tr>"
            }
            page += "</tbody></table>"
        }
        page += "</section>"
        for participant in participants {
            page += "<section><h2>\(escape(participant.member.name)) <small class=\"meta\">(\(participant.member.role.rawValue), \(participant.stage?.rawValue ?? "n/a"))</small></h2>"
            page += "<h3>Balance owed to \(escape(shipper.name))</h3><table><thead><tr><th>Pallet type</th><th>Confirmed</th><th>Pending</th></tr></thead><tbody>"
            for balance in participant.balances {
                page += "<tr><td>\(escape(balance.code))</td><td class=\"n\">\(balance.confirmed)</td><td class=\"n\">\(balance.pending)</td></tr>"
            }
            page += "</tbody></table>"
            let current = participant.current
            let previous = participant.previous
            page += """
                <h3>This period against the previous one</h3>
                <table><thead><tr><th>Indicator</th><th>This period</th><th>Previous period</th></tr></thead><tbody>
                <tr><td>Pallets issued</td><td class="n">\(current?.issued ?? 0)</td><td class="n">\(previous?.issued ?? 0)</td></tr>
                <tr><td>Pallets returned</td><td class="n">\(current?.returned ?? 0)</td><td class="n">\(previous?.returned ?? 0)</td></tr>
                <tr><td>Restitution rate</td><td class="n">\(percent(current?.measure(.restitutionRate)))</td><td class="n">\(percent(previous?.measure(.restitutionRate)))</td></tr>
                <tr><td>Loss rate</td><td class="n">\(percent(current?.measure(.lossRate)))</td><td class="n">\(percent(previous?.measure(.lossRate)))</td></tr>
                <tr><td>Rotation (days, average)</td><td class="n">\(current?.measure(.rotationAverageDays).map { String(format: "%.1f", $0) } ?? "n/a")</td><td class="n">\(previous?.measure(.rotationAverageDays).map { String(format: "%.1f", $0) } ?? "n/a")</td></tr>
                <tr><td>Declared within 24 h</td><td class="n">\(percent(current?.measure(.declaredWithin24hShare)))</td><td class="n">\(percent(previous?.measure(.declaredWithin24hShare)))</td></tr>
                </tbody></table>
                """
            let months = participant.months.sorted { $0.key < $1.key }
            page += WebChart.line(title: "Restitution rate by month (%)", unit: "%", series: [("Restitution", months.map {
                (String(Instant.date(ofDay: $0.key).prefix(7)), ($0.value.measure(.restitutionRate) ?? 0) * 100)
            })], dataLabel: "Data")
            page += WebChart.line(title: "Pallets out at month end", unit: "pallets", series: [("Pallets out", months.map {
                (String(Instant.date(ofDay: $0.key).prefix(7)), Double($0.value.outstanding))
            })], dataLabel: "Data")
            page += WebChart.bars(title: "Aging of pallets out today (pallets)", unit: "pallets",
                                  bars: zip(["0-30 days", "31-60", "61-90", "90+"], participant.aging).map { ($0, Double($1)) },
                                  dataLabel: "Data")
            page += "<h3>Open discrepancies</h3>"
            if participant.openDiscrepancies.isEmpty { page += "<p>None.</p>" } else {
                page += "<table><thead><tr><th>Movement</th><th>Declared (qty / empties)</th><th>Contested (qty / empties)</th><th>Evidence</th><th>Note</th></tr></thead><tbody>"
                for (discrepancy, movement) in participant.openDiscrepancies {
                    let declared = movement.lines.map { "\($0.quantity) / \($0.exchangedQuantity)" }.joined(separator: "; ")
                    let contested = discrepancy.counterLines.map { "\($0.quantity) / \($0.exchangedQuantity)" }.joined(separator: "; ")
                    let evidence = discrepancy.evidence.map { $0.url.map { "<a href=\"\(escape($0))\">photo</a>" } ?? String($0.sha256.prefix(12)) } ?? ""
                    page += "<tr><td>\(movement.kind.rawValue) \(escape(movement.eventTime.description))</td><td>\(declared)</td><td>\(contested)</td><td>\(evidence)</td><td>\(escape(discrepancy.note ?? ""))</td></tr>"
                }
                page += "</tbody></table>"
            }
            page += "<h3>Overdue pallet notes</h3>"
            if participant.overdueNotes.isEmpty { page += "<p>None.</p>" } else {
                page += "<table><thead><tr><th>Note</th><th>Due</th><th>Outstanding</th><th>Value</th></tr></thead><tbody>"
                for (note, value) in participant.overdueNotes {
                    page += "<tr><td>\(escape(note.serial ?? String(note.id.uuidString.prefix(8))))</td><td>\(note.dueDate)</td><td class=\"n\">\(note.outstanding)</td><td class=\"n\">\(value.map { String(format: "%.2f %@", Double($0) / 100, ecosystem.currency) } ?? "")</td></tr>"
                }
                page += "</tbody></table>"
            }
            page += "<h3>Charter compliance</h3>"
            if participant.compliance.isEmpty { page += "<p>No evaluated clause yet.</p>" } else {
                page += "<table><thead><tr><th>Clause</th><th>Measured</th><th>Target</th><th>Result</th></tr></thead><tbody>"
                for item in participant.compliance {
                    page += "<tr><td>\(item.clause.number). \(escape(item.clause.text))</td><td class=\"n\">\(item.measured.map { String(format: "%.3f", $0) } ?? "n/a")</td><td class=\"n\">\(item.clause.comparator?.rawValue ?? "") \(item.clause.target.map { String($0) } ?? "")</td><td class=\"\(item.result.rawValue)\">\(item.result.rawValue)</td></tr>"
                }
                page += "</tbody></table>"
            }
            page += "</section>"
        }
        page += aggregateSection(escape)
        page += "<section><h2>At this session</h2>"
        page += "<h3>Minutes</h3><p>\(escape(session.minutes ?? "Not written yet."))</p>"
        page += "<h3>Review</h3><table><tbody>"
        page += "<tr><th>Inside our work</th><td>\(escape(session.reviewInside ?? ""))</td></tr>"
        page += "<tr><th>In the relationship</th><td>\(escape(session.reviewRelationship ?? ""))</td></tr>"
        page += "<tr><th>At the partner's</th><td>\(escape(session.reviewPartner ?? ""))</td></tr></tbody></table>"
        page += "<h3>Actions agreed</h3>"
        if actions.isEmpty { page += "<p>None yet.</p>" } else {
            page += "<table><thead><tr><th>Action</th><th>Owner</th><th>Due</th><th>Status</th></tr></thead><tbody>"
            for action in actions {
                page += "<tr><td>\(escape(action.description))</td><td>\(escape(memberNames[action.owner] ?? "?"))</td><td>\(action.dueDate)</td><td>\(action.status)</td></tr>"
            }
            page += "</tbody></table>"
        }
        page += "<p class=\"meta\">Resolutions decided at this session: \(session.resolvedDiscrepancies.count).</p></section></body></html>\n"
        return page
    }

    /// The ecosystem's figures without names, or why a partner is not shown them.
    func aggregateSection(_ escape: (String) -> String) -> String {
        var page = "<section><h2>The ecosystem this period</h2>"
        guard let aggregate else {
            return page + "<p>Fewer than \(PeerAggregate.minimumPartners) partners had pallets issued in this period: "
                + "the ecosystem's figures are not shown, so that no partner's own figures can be read from them.</p></section>"
        }
        page += """
            <p class="meta">All \(aggregate.partners) partners with pallets issued in the period, without names.</p>
            <table><thead><tr><th>Figure</th><th>Value</th></tr></thead><tbody>
            <tr><td>Pallets issued</td><td class="n">\(aggregate.issued)</td></tr>
            <tr><td>Pallets returned</td><td class="n">\(aggregate.returned)</td></tr>
            <tr><td>Restitution rate (whole ecosystem)</td><td class="n">\(percent(aggregate.restitutionRate))</td></tr>
            <tr><td>Restitution, first quartile of partners</td><td class="n">\(percent(aggregate.restitutionFirstQuartile))</td></tr>
            <tr><td>Restitution, median partner</td><td class="n">\(percent(aggregate.restitutionMedian))</td></tr>
            <tr><td>Restitution, third quartile of partners</td><td class="n">\(percent(aggregate.restitutionThirdQuartile))</td></tr>
            </tbody></table>
            """
        // Where the reader stands among the partners: its own rate beside the spread.
        var bars: [(String, Double)] = []
        if !mediatorView, let mine = participants.first?.current?.measure(.restitutionRate) { bars.append(("You", mine * 100)) }
        for (label, value) in [("First quartile", aggregate.restitutionFirstQuartile), ("Median", aggregate.restitutionMedian),
                               ("Third quartile", aggregate.restitutionThirdQuartile),
                               ("Whole ecosystem", aggregate.restitutionRate)] {
            if let value { bars.append((label, value * 100)) }
        }
        if !bars.isEmpty {
            page += WebChart.bars(title: "Restitution this period (%)", unit: "%", bars: bars, dataLabel: "Data")
        }
        return page + "</section>"
    }
}
