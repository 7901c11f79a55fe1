import Foundation
import Hummingbird
import OpenAPIRuntime
import PalletFlowContract
import PalletFlowCore
import PalletFlowStore

/// Mediation sessions (report, minutes, review, actions, resolutions), charters, kits and
/// the indicator recompute.
extension WebApp {
    func sessions(_ page: PageContext) async throws -> Response {
        let t = page.t
        let items = try await api.listSessions(.init(path: .init(ecosystemId: eco))).ok.body.json.items
        var body = "<h1>\(esc(t("Mediation sessions")))</h1>"
        body += items.isEmpty ? "<p>\(esc(t("None.")))</p>" : Layout.table(caption: nil, headers: [t("Title"), t("Scheduled"), t("Period"), t("State")],
            rows: items.sorted { $0.scheduledAt > $1.scheduledAt }.map { session in
                ["<a href=\"/app/sessions/\(esc(session.id))\">\(esc(session.title))</a>",
                 esc(Instant(session.scheduledAt).rfc3339(keepingOffset: false).prefix(16).description),
                 esc("\(session.periodStart) – \(session.periodEnd)"), esc(session.state.rawValue)]
            }, id: "sessions")
        return Self.html(.ok, Layout.page(page, title: t("Mediation sessions"), body: body))
    }

    /// The API's HTML report, as a string.
    func reportHTML(_ id: String) async throws -> String {
        let output = try await api.getSessionReport(.init(path: .init(ecosystemId: eco, sessionId: id),
                                                          headers: .init(accept: [.init(contentType: .html)])))
        guard case .html(let body) = try output.ok.body else { throw Problem.notFound("report") }
        return try await String(collecting: body, upTo: 32 << 20)
    }

    func sessionPrint(_ page: PageContext, _ id: String) async throws -> Response {
        Self.html(.ok, try await reportHTML(id))
    }

    func session(_ page: PageContext, _ id: String, saved: Bool) async throws -> Response {
        let t = page.t
        let report = try await api.getSessionReport(.init(path: .init(ecosystemId: eco, sessionId: id))).ok.body.json
        let members = try await names()
        let html = try await reportHTML(id)
        // The report's body, as the API renders it: the same numbers, in the page frame.
        var inner = html
        if let start = html.range(of: "<body>"), let end = html.range(of: "</body>", options: .backwards) {
            inner = String(html[start.upperBound..<end.lowerBound])
        }
        let session = report.session
        var body = ""
        if saved { body += "<p class=\"flash\" role=\"status\">\(esc(t("Saved.")))</p>" }
        body += "<p class=\"noprint\"><a class=\"button\" href=\"/app/sessions/\(esc(id))/print\">\(esc(t("Print view")))</a></p>"
        body += "<article id=\"report\">\(inner)</article>"
        let mediator = page.caller.role == .coordinator || page.caller.role == .shipper
        if mediator {
            body += "<section class=\"noprint\"><h2>\(esc(t("Minutes")))</h2>"
            body += """
                <form method="post" action="/app/sessions/\(esc(id))">\(page.csrfField)
                <label for="minutes">\(esc(t("Minutes")))</label><textarea id="minutes" name="minutes">\(esc(session.minutes ?? ""))</textarea>
                <label for="reviewInside">\(esc(t("Review: inside our work")))</label><textarea id="reviewInside" name="reviewInside">\(esc(session.reviewInside ?? ""))</textarea>
                <label for="reviewRelationship">\(esc(t("Review: in the relationship")))</label><textarea id="reviewRelationship" name="reviewRelationship">\(esc(session.reviewRelationship ?? ""))</textarea>
                <label for="reviewPartner">\(esc(t("Review: at the partner's")))</label><textarea id="reviewPartner" name="reviewPartner">\(esc(session.reviewPartner ?? ""))</textarea>
                <label for="state">\(esc(t("State")))</label><select id="state" name="state">
                \(["planned", "held", "closed"].map { "<option value=\"\($0)\"\(session.state.rawValue == $0 ? " selected" : "")>\($0)</option>" }.joined())
                </select>
                <button type="submit">\(esc(t("Save")))</button></form>
                """
            body += "<h2>\(esc(t("Actions agreed")))</h2>"
            body += Layout.table(caption: nil, headers: [t("Action"), t("Owner"), t("Due"), t("Status"), ""], rows: report.actions.map { action in
                [esc(action.description), esc(members[action.ownerId]?.name ?? ""), esc(action.dueDate), esc(action.status.rawValue),
                 action.status == .open ? "<form class=\"inline\" method=\"post\" action=\"/app/sessions/\(esc(id))/actions/\(esc(action.id))\">\(page.csrfField)<input type=\"hidden\" name=\"status\" value=\"done\"><button type=\"submit\">\(esc(t("Mark done")))</button></form>" : ""]
            }, id: "actions")
            let owners = members.values.filter { session.participantIds.contains($0.id.lowercased()) || $0.role == .shipper || $0.role == .coordinator }
                .sorted { $0.name < $1.name }
            body += """
                <h3>\(esc(t("Add an action")))</h3>
                <form method="post" action="/app/sessions/\(esc(id))/actions">\(page.csrfField)
                <label for="description">\(esc(t("Description")))</label><input type="text" id="description" name="description" required maxlength="2000">
                <label for="ownerId">\(esc(t("Owner")))</label><select id="ownerId" name="ownerId">
                \(owners.map { "<option value=\"\(esc($0.id.lowercased()))\">\(esc($0.name))</option>" }.joined())</select>
                <label for="dueDate">\(esc(t("Due date")))</label><input type="date" id="dueDate" name="dueDate" required value="\(Instant.date(ofDay: api.store.today + 30))">
                <button type="submit">\(esc(t("Add an action")))</button></form>
                """
            let open = try await api.listDiscrepancies(.init(path: .init(ecosystemId: eco), query: .init(open: true))).ok.body.json.items
            if !open.isEmpty {
                body += """
                    <h3>\(esc(t("Resolve at this session")))</h3>
                    <form method="post" action="/app/sessions/\(esc(id))/resolutions">\(page.csrfField)
                    <label for="movementId">\(esc(t("Movement")))</label><select id="movementId" name="movementId">
                    \(open.map { "<option value=\"\(esc($0.movementId))\">\(esc(String($0.movementId.prefix(8)))) · \(esc(members[$0.contestedBy]?.name ?? "")) · \(esc($0.declared.map { "\($0.quantity)" }.joined(separator: "+"))) / \(esc($0.contested.map { "\($0.quantity)" }.joined(separator: "+")))</option>" }.joined())
                    </select>
                    <label for="accept">\(esc(t("Resolution")))</label><select id="accept" name="accept">
                    <option value="declared">\(esc(t("Declared version stands")))</option><option value="contested">\(esc(t("Contested version stands")))</option></select>
                    <label for="note">\(esc(t("Note")))</label><input type="text" id="note" name="note" maxlength="2000">
                    <button type="submit">\(esc(t("Resolve")))</button></form>
                    """
            }
            body += "</section>"
        }
        return Self.html(.ok, Layout.page(page, title: session.title, body: body))
    }

    func saveSession(_ page: PageContext, _ id: String, _ form: [String: String]) async throws -> Response {
        func text(_ name: String) -> String? { form[name].map { $0.replacingOccurrences(of: "\r\n", with: "\n") } }
        _ = try await api.updateSession(.init(path: .init(ecosystemId: eco, sessionId: id), body: .json(.init(
            state: form["state"].flatMap { .init(rawValue: $0) }, minutes: text("minutes"), reviewInside: text("reviewInside"),
            reviewRelationship: text("reviewRelationship"), reviewPartner: text("reviewPartner"))))).ok
        return Self.redirect("/app/sessions/\(id)?saved=1")
    }

    func addAction(_ page: PageContext, _ id: String, _ form: [String: String]) async throws -> Response {
        _ = try await api.addSessionAction(.init(path: .init(ecosystemId: eco, sessionId: id), body: .json(.init(
            description: form["description"] ?? "", ownerId: form["ownerId"] ?? "", dueDate: form["dueDate"] ?? "")))).created
        return Self.redirect("/app/sessions/\(id)?saved=1")
    }

    func updateAction(_ page: PageContext, _ id: String, _ action: String, _ form: [String: String]) async throws -> Response {
        guard let status = Components.Schemas.ActionUpdate.StatusPayload(rawValue: form["status"] ?? "") else {
            throw Problem.validation([FieldError("status", "must be open, done or dropped")])
        }
        _ = try await api.updateSessionAction(.init(path: .init(ecosystemId: eco, sessionId: id, actionId: action),
                                                    body: .json(.init(status: status)))).ok
        return Self.redirect("/app/sessions/\(id)?saved=1")
    }

    func resolve(_ page: PageContext, _ id: String, _ form: [String: String]) async throws -> Response {
        guard let accept = Components.Schemas.SessionResolution.AcceptPayload(rawValue: form["accept"] ?? "") else {
            throw Problem.validation([FieldError("accept", "must be declared or contested")])
        }
        let note = form["note"].flatMap { $0.isEmpty ? nil : $0 }
        _ = try await api.resolveAtSession(.init(path: .init(ecosystemId: eco, sessionId: id), body: .json(.init(
            movementId: form["movementId"] ?? "", accept: accept, note: note)))).ok
        return Self.redirect("/app/sessions/\(id)?saved=1")
    }

    // MARK: Charters, kits, indicators

    func charters(_ page: PageContext) async throws -> Response {
        let t = page.t
        let members = try await names()
        let charters = try await api.listCharters(.init(path: .init(ecosystemId: eco))).ok.body.json.items
        let compliance = try await api.listCompliance(.init(path: .init(ecosystemId: eco))).ok.body.json.items
        var body = "<h1>\(esc(t("Charters")))</h1>"
        if charters.isEmpty { body += "<p>\(esc(t("None.")))</p>" }
        for charter in charters.sorted(by: { $0.version > $1.version }) {
            body += "<h2>\(esc(charter.title)) — \(esc(t("Version"))) \(charter.version) (\(esc(charter.status == .published ? t("Published") : t("Draft"))))</h2>"
            body += "<ol>" + charter.clauses.map { "<li value=\"\($0.number)\">\(esc($0.text))</li>" }.joined() + "</ol>"
            body += "<h3>\(esc(t("Signatures"))) (\(charter.signatures.count))</h3>"
            body += charter.signatures.isEmpty ? "<p>\(esc(t("None.")))</p>" : "<ul>" + charter.signatures.map {
                "<li>\(esc(members[$0.memberId]?.name ?? $0.memberId)) · \(esc(Instant($0.signedAt).rfc3339(keepingOffset: false).prefix(10).description))</li>"
            }.joined() + "</ul>"
            let rows = compliance.filter { $0.charterId == charter.id }
            if !rows.isEmpty {
                let latest = rows.map(\.periodStart).max() ?? ""
                body += Layout.table(caption: "\(t("Charter compliance")) · \(latest)", headers: [t("Partner"), t("Clause"), t("Measured"), t("Result")],
                    rows: rows.filter { $0.periodStart == latest }.sorted { (members[$0.memberId]?.name ?? "", $0.clause) < (members[$1.memberId]?.name ?? "", $1.clause) }.map {
                        [esc(members[$0.memberId]?.name ?? ""), "\($0.clause)", "n:" + ($0.measured.map { String(format: "%.3f", $0) } ?? "n/a"),
                         "<span class=\"\($0.result.rawValue)\">\(esc($0.result.rawValue))</span>"]
                    }, id: "compliance")
            }
        }
        return Self.html(.ok, Layout.page(page, title: t("Charters"), body: body))
    }

    func kits(_ page: PageContext) async throws -> Response {
        let t = page.t
        let members = try await names()
        let kits = try await api.listKits(.init(path: .init(ecosystemId: eco))).ok.body.json.items
        let assignments = try await api.listKitAssignments(.init(path: .init(ecosystemId: eco))).ok.body.json.items
        var body = "<h1>\(esc(t("Kits")))</h1>"
        for kit in kits {
            body += "<h2>\(esc(kit.name))</h2><ol>" + kit.items.map { "<li>\(esc($0.title)) <span class=\"meta\">(\($0.kind.rawValue))</span></li>" }.joined() + "</ol>"
            let mine = assignments.filter { $0.kitId == kit.id }
            if !mine.isEmpty {
                let done = mine.map { assignment in Double(assignment.items.filter(\.done).count) / Double(max(1, assignment.items.count)) * 100 }
                body += WebChart.bars(title: "\(kit.name) — \(t("Progress")) (%)", unit: "%",
                                      bars: zip(mine, done).map { (members[$0.memberId]?.name ?? "?", $1) }, dataLabel: t("Data"))
            }
        }
        if kits.isEmpty {
            for assignment in assignments {
                body += "<h2>\(esc(assignment.kitName))\(assignment.completed ? " ✓" : "")</h2>"
                body += Layout.table(caption: nil, headers: [t("Items"), t("Done")], rows: assignment.items.map { [esc($0.item.title), $0.done ? "✓" : "–"] })
            }
        }
        return Self.html(.ok, Layout.page(page, title: t("Kits"), body: body))
    }

    func indicators(_ page: PageContext, job: String?) async throws -> Response {
        let t = page.t
        let members = try await names()
        let jobs = try await api.listJobs(.init(path: .init(ecosystemId: eco), query: .init())).ok.body.json.items
        let running = jobs.contains { ($0.state == .queued || $0.state == .running) && $0.kind.hasPrefix("indicators") }
        var body = "<h1>\(esc(t("Indicators")))</h1>"
        body += "<form method=\"post\" action=\"/app/indicators/recompute\" class=\"noprint\">\(page.csrfField)<button type=\"submit\">\(esc(t("Recompute indicators")))</button></form>"
        body += "<h2>\(esc(t("Recent jobs")))</h2>"
        body += Layout.table(caption: nil, headers: ["#", t("Kind"), t("State"), t("Progress"), t("Attempts")], rows: jobs.prefix(10).map {
            [esc(String($0.id.prefix(8))) + (job == $0.id ? " ←" : ""), esc($0.kind), esc($0.state.rawValue), esc($0.progress ?? ""), "n:\($0.attempts)/\($0.maxAttempts)"]
        }, id: "jobs")
        let rows = try await api.listIndicators(.init(path: .init(ecosystemId: eco), query: .init(period: .toDate))).ok.body.json.items
        body += Layout.table(caption: "\(t("Indicators")) (to date)", headers: [t("Partner"), t("Pallet type"), t("Issued"), t("Returned"), t("Restitution"), t("Loss rate"), t("Outstanding"), t("Rotation (days)")],
            rows: rows.sorted { (members[$0.partnerId]?.name ?? "", $0.palletTypeCode ?? "") < (members[$1.partnerId]?.name ?? "", $1.palletTypeCode ?? "") }.map {
                [esc(members[$0.partnerId]?.name ?? ""), esc($0.palletTypeCode ?? ""), "n:\($0.issued)", "n:\($0.returned)",
                 "n:" + esc(page.percent($0.restitutionRate)), "n:" + esc(page.percent($0.lossRate)), "n:\($0.outstanding)",
                 "n:" + ($0.rotationAverageDays.map { String(format: "%.1f", $0) } ?? "n/a")]
            }, id: "indicators")
        var html = Layout.page(page, title: t("Indicators"), body: body)
        if running {
            // While a recompute runs, the page refreshes itself to show its progress.
            html = html.replacingOccurrences(of: "<meta charset=\"utf-8\">", with: "<meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">")
        }
        return Self.html(.ok, html)
    }

    func recompute(_ page: PageContext) async throws -> Response {
        let accepted = try await api.recomputeIndicators(.init(path: .init(ecosystemId: eco))).accepted.body.json
        return Self.redirect("/app/indicators?job=\(accepted.id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")")
    }
}
