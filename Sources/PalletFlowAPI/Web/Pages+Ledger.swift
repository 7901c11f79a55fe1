import Foundation
import Hummingbird
import OpenAPIRuntime
import PalletFlowContract
import PalletFlowCore
import PalletFlowStore

/// Overview, partner and own-account pages: balances, trends, aging, disputes, notes.
extension WebApp {
    var eco: String { RequestScope.current.caller!.ecosystem.uuidString.lowercased() }

    func names() async throws -> [String: Components.Schemas.Member] {
        let members = try await api.listMembers(.init(path: .init(ecosystemId: eco))).ok.body.json.items
        return Dictionary(uniqueKeysWithValues: members.map { ($0.id, $0) })
    }

    func palletTypes() async throws -> [String: Components.Schemas.PalletType] {
        let types = try await api.listPalletTypes(.init(path: .init(ecosystemId: eco))).ok.body.json.items
        return Dictionary(uniqueKeysWithValues: types.map { ($0.id, $0) })
    }

    func monthLabel(_ date: String) -> String { String(date.prefix(7)) }

    /// Ecosystem-wide restitution and loss by month, from the API's monthly indicators.
    func trendCharts(_ page: PageContext, partner: String?) async throws -> String {
        let t = page.t
        let today = api.store.today
        let first = PeriodKind.month.start(of: PeriodKind.month.start(of: today) - 330)
        let rows = try await api.listIndicators(.init(path: .init(ecosystemId: eco), query: .init(
            partner: partner, period: .month, from: Instant.date(ofDay: first)))).ok.body.json.items
        var months: [String: (issued: Int64, returned: Int64, lost: Int64)] = [:]
        for row in rows {
            var month = months[row.periodStart] ?? (0, 0, 0)
            month.issued += row.issued
            month.returned += row.returned
            month.lost += row.declaredLosses + row.presumedLosses + row.scrapped
            months[row.periodStart] = month
        }
        let keys = months.keys.sorted()
        let restitution = keys.map { key -> (String, Double) in
            let month = months[key]!
            return (monthLabel(key), month.issued == 0 ? 0 : Double(month.returned) / Double(month.issued) * 100)
        }
        let loss = keys.map { key -> (String, Double) in
            let month = months[key]!
            return (monthLabel(key), month.issued == 0 ? 0 : Double(month.lost) / Double(month.issued) * 100)
        }
        return "<div class=\"grid2\">"
            + WebChart.line(title: t("Restitution rate by month (%)"), unit: "%", series: [(t("Restitution"), restitution)], dataLabel: t("Data"))
            + WebChart.line(title: t("Loss rate by month (%)"), unit: "%", series: [(t("Loss rate"), loss)], dataLabel: t("Data"))
            + "</div>"
    }

    func agingChart(_ page: PageContext, rows: [Components.Schemas.Indicator]) -> String {
        var buckets: [Int64] = [0, 0, 0, 0]
        for row in rows {
            buckets[0] += row.aging.days0to30
            buckets[1] += row.aging.days31to60
            buckets[2] += row.aging.days61to90
            buckets[3] += row.aging.days90plus
        }
        return WebChart.bars(title: page.t("Aging of pallets out today"), unit: page.t("Pallets out"),
                             bars: zip(["0-30", "31-60", "61-90", "90+"], buckets).map { ($0, Double($1)) }, dataLabel: page.t("Data"))
    }

    func discrepancyTable(_ page: PageContext, _ items: [Components.Schemas.Discrepancy], members: [String: Components.Schemas.Member]) -> String {
        let t = page.t
        guard !items.isEmpty else { return "<p>\(esc(t("None.")))</p>" }
        return Layout.table(caption: nil, headers: [t("Movement"), t("Declared"), t("Contested"), t("Evidence"), t("Note")], rows: items.map { item in
            [
                "<code>\(esc(String(item.movementId.prefix(8))))</code> · \(esc(members[item.contestedBy]?.name ?? ""))",
                esc(item.declared.map { "\($0.quantity) / \($0.exchangedQuantity ?? 0)" }.joined(separator: "; ")),
                esc(item.contested.map { "\($0.quantity) / \($0.exchangedQuantity ?? 0)" }.joined(separator: "; ")),
                item.evidence.map { evidence in evidence.url.map { "<a href=\"\(esc($0))\" rel=\"noreferrer\">\(esc(String(evidence.sha256.prefix(10))))</a>" } ?? esc(String(evidence.sha256.prefix(10))) } ?? "",
                esc(item.note ?? ""),
            ]
        })
    }

    func notesTable(_ page: PageContext, _ notes: [Components.Schemas.PalletNote], members: [String: Components.Schemas.Member],
                    types: [String: Components.Schemas.PalletType]) -> String {
        let t = page.t
        guard !notes.isEmpty else { return "<p>\(esc(t("None.")))</p>" }
        return Layout.table(caption: nil, headers: [t("Note"), t("Issuer"), t("Holder"), t("Pallet type"), t("Due"), t("Outstanding"), t("Value"), t("State")],
                            rows: notes.map { note in
            let unit = types[note.palletTypeId]?.unitValue?.amountMinor
            return [esc(note.serial ?? String(note.id.prefix(8))), esc(members[note.issuerId]?.name ?? ""), esc(members[note.holderId]?.name ?? ""),
                    esc(types[note.palletTypeId]?.code ?? ""), esc(note.dueDate), "n:\(note.outstanding)",
                    "n:" + esc(page.money(unit.map { $0 * note.outstanding })), esc(note.state.rawValue)]
        })
    }

    // MARK: Overview

    func overview(_ page: PageContext) async throws -> Response {
        let t = page.t
        guard page.caller.role.readsWholeEcosystem else { return Self.redirect("/app/me") }
        let members = try await names()
        let types = try await palletTypes()
        guard let shipper = members.values.first(where: { $0.role == .shipper }) else { throw Problem.notFound("shipper") }
        let balances = try await api.listBalances(.init(path: .init(ecosystemId: eco), query: .init(view: .bilateral))).ok.body.json.items
        // What each partner owes the shipper, per pallet type (all qualities).
        var owed: [String: [String: (confirmed: Int64, pending: Int64)]] = [:]
        for balance in balances where balance.counterpartyId == shipper.id.lowercased() {
            guard let party = balance.partyId, party != shipper.id.lowercased() else { continue }
            var row = owed[party, default: [:]][balance.palletTypeId] ?? (0, 0)
            row.confirmed += balance.confirmed
            row.pending += balance.pending
            owed[party, default: [:]][balance.palletTypeId] = row
        }
        let toDate = try await api.listIndicators(.init(path: .init(ecosystemId: eco), query: .init(period: .toDate))).ok.body.json.items
        let discrepancies = try await api.listDiscrepancies(.init(path: .init(ecosystemId: eco), query: .init(open: true))).ok.body.json.items
        let overdue = try await api.listPalletNotes(.init(path: .init(ecosystemId: eco), query: .init(state: .overdue))).ok.body.json.items
        let alerts = try await api.listAlerts(.init(path: .init(ecosystemId: eco))).ok.body.json.items
        let funnel = try await api.getFunnel(.init(path: .init(ecosystemId: eco))).ok.body.json

        var totalValue: Int64 = 0
        var rows: [[String]] = []
        for (party, perType) in owed.sorted(by: { (members[$0.key]?.name ?? "") < (members[$1.key]?.name ?? "") }) {
            for (type, figures) in perType.sorted(by: { (types[$0.key]?.code ?? "") < (types[$1.key]?.code ?? "") }) {
                let balance = figures.confirmed + figures.pending
                let value = types[type]?.unitValue.map { $0.amountMinor * balance }
                totalValue += value ?? 0
                let code = types[type]?.code ?? "?"
                rows.append([
                    "<a href=\"/app/partners/\(esc(party))\">\(esc(members[party]?.name ?? party))</a>",
                    esc(members[party]?.role.rawValue ?? ""), esc(code),
                    "n:\(figures.confirmed)", "n:\(figures.pending)",
                    "n:<span data-owed=\"\(esc(party)):\(esc(code))\">\(balance)</span>", "n:" + esc(page.money(value)),
                ])
            }
        }
        let outstanding = toDate.reduce(Int64(0)) { $0 + $1.outstanding }
        var body = "<h1>\(esc(t("Overview")))</h1><p class=\"meta\">\(esc(t("The figures are those of the API; the charts have their data table below them.")))</p>"
        body += "<div class=\"cards\">"
        body += "<div class=\"card\"><div class=\"k\">\(esc(t("Partners")))</div><div class=\"v\">\(members.count - 1)</div></div>"
        body += "<div class=\"card\"><div class=\"k\">\(esc(t("Pallets out")))</div><div class=\"v\" id=\"pallets-out\">\(outstanding)</div></div>"
        body += "<div class=\"card\"><div class=\"k\">\(esc(t("Total value")))</div><div class=\"v\">\(esc(page.money(totalValue)))</div></div>"
        body += "<div class=\"card\"><div class=\"k\">\(esc(t("Open discrepancies")))</div><div class=\"v\" id=\"open-discrepancies\">\(discrepancies.count)</div></div>"
        body += "<div class=\"card\"><div class=\"k\">\(esc(t("Overdue pallet notes")))</div><div class=\"v\">\(overdue.count)</div></div>"
        body += "</div>"
        body += try await trendCharts(page, partner: nil)
        let stages = ["invited", "joined", "charter_signed", "kit_completed", "first_declaration", "active", "dormant"]
        var counts: [String: Int] = [:]
        for entry in funnel.entries { counts[entry.stage.rawValue, default: 0] += 1 }
        body += "<div class=\"grid2\">" + agingChart(page, rows: toDate)
        body += WebChart.bars(title: t("Prescription funnel"), unit: t("Count"),
                              bars: stages.map { ($0.replacingOccurrences(of: "_", with: " "), Double(counts[$0] ?? 0)) }, dataLabel: t("Data"))
        body += "</div>"
        body += "<h2>\(esc(t("Balances owed to the shipper")))</h2>"
        body += Layout.table(caption: nil, headers: [t("Partner"), t("Role"), t("Pallet type"), t("Confirmed"), t("Pending"), t("Balance"), t("Value")],
                             rows: rows, id: "balances")
        body += "<h2>\(esc(t("Open discrepancies")))</h2>" + discrepancyTable(page, discrepancies, members: members)
        // Overdue notes per issuer: who owes what, largest value first; the notes themselves
        // are on each partner's page.
        body += "<h2>\(esc(t("Overdue pallet notes")))</h2>"
        var perIssuer: [String: (count: Int, pallets: Int64, value: Int64)] = [:]
        for note in overdue {
            var row = perIssuer[note.issuerId] ?? (0, 0, 0)
            row.count += 1
            row.pallets += note.outstanding
            row.value += (types[note.palletTypeId]?.unitValue?.amountMinor ?? 0) * note.outstanding
            perIssuer[note.issuerId] = row
        }
        body += perIssuer.isEmpty ? "<p>\(esc(t("None.")))</p>" : Layout.table(caption: nil,
            headers: [t("Issuer"), t("Count"), t("Outstanding"), t("Value")],
            rows: perIssuer.sorted { $0.value.value > $1.value.value }.map { issuer, row in
                ["<a href=\"/app/partners/\(esc(issuer))\">\(esc(members[issuer]?.name ?? issuer))</a>", "n:\(row.count)", "n:\(row.pallets)",
                 "n:" + esc(page.money(row.value))]
            }, id: "overdue")
        body += "<h2>\(esc(t("Alerts")))</h2>"
        body += alerts.isEmpty ? "<p>\(esc(t("None.")))</p>" : Layout.table(caption: nil, headers: [t("Date"), t("Kind"), t("Partner"), t("Message")],
            rows: alerts.prefix(20).map { [esc(Instant($0.createdAt).rfc3339(keepingOffset: false).prefix(10).description), esc($0.kind), esc($0.partnerId.flatMap { members[$0]?.name } ?? ""), esc($0.message)] })
        body += "<h2>\(esc(t("Prescription funnel")))</h2>"
        body += Layout.table(caption: nil, headers: [t("Partner"), t("Role"), t("Stage"), t("Since")], rows: funnel.entries.map {
            [esc($0.name), esc($0.role.rawValue), esc($0.stage.rawValue), esc(Instant($0.since).rfc3339(keepingOffset: false).prefix(10).description)]
        })
        return Self.html(.ok, Layout.page(page, title: t("Overview"), body: body))
    }

    // MARK: My account

    func myAccount(_ page: PageContext) async throws -> Response {
        let t = page.t
        let me = page.caller.membership.uuidString.lowercased()
        let members = try await names()
        let types = try await palletTypes()
        let balances = try await api.listBalances(.init(path: .init(ecosystemId: eco), query: .init(view: .bilateral, party: me))).ok.body.json.items
        var body = "<h1>\(esc(page.memberName))</h1>"
        body += "<p><a href=\"/app/partners/\(me)\">\(esc(t("Statement")))</a> · <a href=\"/app/partners/\(me)#movements\">\(esc(t("Movements")))</a></p>"
        body += "<h2>\(esc(t("What I owe and am owed")))</h2>"
        let rows = balances.filter { $0.balance != 0 }.sorted { ($0.counterpartyId ?? "", $0.palletTypeCode ?? "") < ($1.counterpartyId ?? "", $1.palletTypeCode ?? "") }
        body += Layout.table(caption: nil, headers: [t("Counterparty"), t("Pallet type"), t("Quality"), t("I owe"), t("I am owed"), t("Pending")], rows: rows.map { row in
            let code = row.palletTypeCode ?? types[row.palletTypeId]?.code ?? ""
            return [esc(row.counterpartyId.flatMap { members[$0]?.name } ?? ""), esc(code), esc(row.quality.rawValue),
                    "n:<span data-owe=\"\(esc(row.counterpartyId ?? "")):\(esc(code)):\(row.quality.rawValue)\">\(max(0, row.balance))</span>",
                    "n:\(max(0, -row.balance))", "n:\(row.pending)"]
        }, id: "my-balances")
        // Everything waiting for this member, not a first page of the ecosystem's declared
        // movements: the counterparty is the member itself, so it may see them all.
        let waiting = try await api.store.movements(ecosystem: page.caller.ecosystem, MovementFilter(
            counterparty: page.caller.membership, status: "declared", limit: 1_000))
        body += "<h2>\(esc(t("Waiting for my confirmation")))</h2>"
        if waiting.isEmpty {
            body += "<p>\(esc(t("Nothing waits for you.")))</p>"
        } else {
            body += Layout.table(caption: nil, headers: [t("Event time"), t("Kind"), t("From"), t("To"), t("Quantity"), ""], rows: waiting.map { movement in
                let id = movement.id.uuidString.lowercased()
                let quantities = movement.lines.map { "\($0.quantity) \(types[$0.palletType.uuidString.lowercased()]?.code ?? "")" }
                return [esc(shortTime(movement.eventTime.rfc3339(keepingOffset: true))), esc(movement.kind.rawValue),
                        esc(movement.from.flatMap { members[$0.party.uuidString.lowercased()]?.name } ?? ""),
                        esc(movement.to.flatMap { members[$0.party.uuidString.lowercased()]?.name } ?? ""),
                        "n:" + esc(quantities.joined(separator: ", ")),
                        "<form class=\"inline\" method=\"post\" action=\"/app/movements/\(id)/confirm\">\(page.csrfField)<button type=\"submit\">\(esc(t("Confirm")))</button></form>"]
            }, id: "waiting")
        }
        body += try await trendCharts(page, partner: me)
        return Self.html(.ok, Layout.page(page, title: t("My account"), body: body))
    }

    func confirm(_ page: PageContext, _ movement: String) async throws -> Response {
        _ = try await api.confirmMovement(.init(path: .init(ecosystemId: eco, movementId: movement))).ok
        return Self.redirect("/app/me")
    }

    func movementRow(_ movement: Components.Schemas.Movement, members: [String: Components.Schemas.Member],
                     types: [String: Components.Schemas.PalletType]) -> [String] {
        let from = movement.from.flatMap { members[$0.partyId]?.name } ?? ""
        let to = movement.to.flatMap { members[$0.partyId]?.name } ?? ""
        let quantities = movement.lines.map { "\($0.quantity) \(types[$0.palletTypeId]?.code ?? "")" }.joined(separator: ", ")
        let exchanged: Int64 = movement.lines.reduce(0) { $0 + $1.exchangedQuantity }
        return [esc(shortTime(movement.eventTime)), esc(movement.kind.rawValue), esc(from), esc(to), "n:" + esc(quantities), "n:\(exchanged)",
                esc(movement.status.rawValue)]
    }

    /// `2026-11-27T22:41:09.288693+01:00` as `2026-11-27 22:41 +01:00`: minutes are enough to read.
    func shortTime(_ text: String) -> String {
        guard text.count >= 16 else { return text }
        let offset = text.hasSuffix("Z") ? "UTC" : String(text.suffix(6))
        return String(text.prefix(10)) + " " + String(text.dropFirst(11).prefix(5)) + " " + offset
    }

    // MARK: Partner page

    func partner(_ page: PageContext, _ id: String, query: [String: String]) async throws -> Response {
        let t = page.t
        let member = try await api.getMember(.init(path: .init(ecosystemId: eco, memberId: id))).ok.body.json
        let members = try await names()
        let types = try await palletTypes()
        guard let shipper = members.values.first(where: { $0.role == .shipper }) else { throw Problem.notFound("shipper") }
        let today = api.store.today
        let monthStart = PeriodKind.month.start(of: today)
        let from = query["from"].flatMap { Instant.parse($0 + "T00:00:00Z") != nil ? $0 : nil } ?? Instant.date(ofDay: monthStart)
        let until = query["until"].flatMap { Instant.parse($0 + "T00:00:00Z") != nil ? $0 : nil } ?? Instant.date(ofDay: today + 1)
        var body = "<h1>\(esc(member.name))</h1><p class=\"meta\">\(esc(member.role.rawValue))\(member.pgln.map { " · PGLN \(esc($0))" } ?? "")</p>"

        if member.role != .shipper && member.role != .coordinator {
            body += "<h2 id=\"statement\">\(esc(t("Statement")))</h2>"
            body += """
                <form method="get" class="filters noprint"><div><label for="from">\(esc(t("From")))</label><input type="date" id="from" name="from" value="\(esc(from))"></div>
                <div><label for="until">\(esc(t("Until")))</label><input type="date" id="until" name="until" value="\(esc(until))"></div>
                <div><button type="submit">\(esc(t("Show")))</button></div></form>
                """
            let statement = try await api.getStatement(.init(path: .init(ecosystemId: eco), query: .init(
                party: member.id.lowercased(), counterparty: shipper.id.lowercased(), from: from + "T00:00:00Z", until: until + "T00:00:00Z"))).ok.body.json
            body += Layout.table(caption: "\(member.name) → \(shipper.name), \(from) – \(until)",
                                 headers: [t("Pallet type"), t("Quality"), t("Opening balance"), t("Movements"), t("Closing balance")],
                                 rows: statement.lines.map { [esc($0.palletTypeCode ?? ""), esc($0.quality.rawValue), "n:\($0.opening)", "n:\($0.movements)", "n:<span data-closing=\"\(esc($0.palletTypeCode ?? "")):\($0.quality.rawValue)\">\($0.closing)</span>"] },
                                 id: "statement-lines")
            body += try await trendCharts(page, partner: member.id.lowercased())
            let toDate = try await api.listIndicators(.init(path: .init(ecosystemId: eco), query: .init(partner: member.id.lowercased(), period: .toDate))).ok.body.json.items
            body += agingChart(page, rows: toDate)
        }

        // Movements, filterable by kind, a page at a time (the API's cursor).
        let kind = query["kind"].flatMap { Components.Schemas.MovementKind(rawValue: $0) }
        let cursor = query["cursor"]
        let list = try await api.listMovements(.init(path: .init(ecosystemId: eco), query: .init(
            party: member.id.lowercased(), kind: kind, cursor: cursor))).ok.body.json
        body += "<h2 id=\"movements\">\(esc(t("Movements")))</h2>"
        body += "<form method=\"get\" class=\"filters noprint\"><div><label for=\"kind\">\(esc(t("Kind")))</label><select id=\"kind\" name=\"kind\"><option value=\"\">\(esc(t("All kinds")))</option>"
        body += MovementKind.allCases.map { "<option value=\"\($0.rawValue)\"\(kind?.rawValue == $0.rawValue ? " selected" : "")>\($0.rawValue)</option>" }.joined()
        body += "</select></div><div><button type=\"submit\">\(esc(t("Filter")))</button></div></form>"
        body += Layout.table(caption: nil, headers: [t("Event time"), t("Kind"), t("From"), t("To"), t("Quantity"), t("Exchanged"), t("Status")],
                             rows: list.items.map { movement in movementRow(movement, members: members, types: types)         }, id: "movements-table")
        if let next = list.nextCursor {
            var link = "/app/partners/\(esc(member.id.lowercased()))?cursor=\(esc(next.addingPercentEncoding(withAllowedCharacters: CharacterSet.alphanumerics) ?? next))"
            if let kind { link += "&amp;kind=\(kind.rawValue)" }
            body += "<p><a href=\"\(link)#movements\" rel=\"next\">\(esc(t("Next"))) →</a></p>"
        }

        let notes = try await api.listPalletNotes(.init(path: .init(ecosystemId: eco), query: .init(party: member.id.lowercased()))).ok.body.json.items
        body += "<h2>\(esc(t("Pallet notes")))</h2>" + notesTable(page, notes, members: members, types: types)

        // Discrepancies on this partner's movements, both versions side by side.
        let discrepancies = try await api.listDiscrepancies(.init(path: .init(ecosystemId: eco), query: .init())).ok.body.json.items
        // The API has already kept the discrepancies this caller may see; their movements
        // come in one query.
        let disputed = try await api.store.movements(
            ecosystem: page.caller.ecosystem, ids: discrepancies.compactMap { UUID(parsing: $0.movementId) })
        let partnerID = UUID(parsing: member.id)
        let concerning = discrepancies.filter { item in
            item.contestedBy == member.id.lowercased()
                || (partnerID.flatMap { id in UUID(parsing: item.movementId).flatMap { disputed[$0] }?.involves(id) } ?? false)
        }
        body += "<h2>\(esc(t("Open discrepancies")))</h2>" + discrepancyTable(page, concerning, members: members)

        let compliance = try await api.listCompliance(.init(path: .init(ecosystemId: eco))).ok.body.json.items.filter { $0.memberId == member.id.lowercased() }
        body += "<h2>\(esc(t("Charter compliance")))</h2>"
        body += compliance.isEmpty ? "<p>\(esc(t("None.")))</p>" : Layout.table(caption: nil, headers: [t("Clause"), t("Period"), t("Measured"), t("Result")],
            rows: compliance.sorted { ($0.periodStart, $0.clause) > ($1.periodStart, $1.clause) }.map {
                ["\($0.clause)", esc($0.periodStart), "n:" + ($0.measured.map { String(format: "%.3f", $0) } ?? "n/a"), "<span class=\"\($0.result.rawValue)\">\(esc($0.result.rawValue))</span>"]
            })
        let kits = try await api.listKitAssignments(.init(path: .init(ecosystemId: eco))).ok.body.json.items.filter { $0.memberId == member.id.lowercased() }
        body += "<h2>\(esc(t("Kit progress")))</h2>"
        body += kits.isEmpty ? "<p>\(esc(t("None.")))</p>" : kits.map { kit in
            "<h3>\(esc(kit.kitName))\(kit.completed ? " ✓" : "")</h3>" + Layout.table(caption: nil, headers: [t("Items"), t("Done")], rows: kit.items.map {
                [esc($0.item.title), $0.done ? "✓" : "–"]
            })
        }.joined()
        return Self.html(.ok, Layout.page(page, title: member.name, body: body))
    }
}
