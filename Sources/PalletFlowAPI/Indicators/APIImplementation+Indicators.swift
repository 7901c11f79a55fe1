import PalletFlowContract
import Foundation
import OpenAPIRuntime
import PalletFlowCore
import PalletFlowStore

extension APIImplementation {
    func requireReader(_ caller: Caller, _ what: String) throws {
        guard caller.role.readsWholeEcosystem else {
            throw Problem.forbidden("\(what) is for the shipper and the coordinator; your role is \(caller.role.rawValue).")
        }
    }

    func listIndicators(_ input: Operations.ListIndicators.Input) async throws -> Operations.ListIndicators.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let (directory, _) = try await directoryCache.get(caller.ecosystem, store: store)
        var check = Validator()
        var partner: UUID?
        if let text = input.query.partner {
            partner = UUID(parsing: text)
            if partner == nil { check.add("partner", "must be a member id") }
        }
        var type: UUID?
        if let text = input.query.palletType {
            type = directory.palletType(text)?.id
            if type == nil { check.add("palletType", "is not a pallet type id or code of this ecosystem") }
        }
        func day(_ text: String?, _ field: String) -> Int? {
            guard let text else { return nil }
            guard let instant = Instant.parse(text + "T00:00:00Z") else {
                check.add(field, "must be a date written YYYY-MM-DD")
                return nil
            }
            return instant.day
        }
        let fromDay = day(input.query.from, "from")
        let untilDay = day(input.query.until, "until")
        try check.throwIfInvalid()
        if !caller.role.readsWholeEcosystem {
            if let partner, partner != caller.membership { throw Problem.notFound("member") }
            partner = caller.membership
        }
        let rows = try await readStore.indicators(ecosystem: caller.ecosystem, partner: partner, palletType: type,
                                              period: input.query.period?.rawValue ?? "month", fromDay: fromDay, untilDay: untilDay)
        let items = rows.map { Components.Schemas.Indicator($0, code: directory.palletTypes[$0.key.palletType]?.code) }
        let wantsCSV = input.headers.accept.contains { $0.contentType == .csv }
            && !input.headers.accept.contains { $0.contentType == .json }
        if wantsCSV {
            var text = CSV.line(["partner_id", "pallet_type", "period", "period_start", "issued", "returned", "restitution_rate",
                                 "outstanding", "outstanding_value_minor", "aging_0_30", "aging_31_60", "aging_61_90",
                                 "aging_90_plus", "presumed_losses", "declared_losses", "scrapped", "loss_rate",
                                 "rotation_average_days", "rotation_median_days", "rotation_p90_days", "overdue_notes",
                                 "declarations", "within_24h_share", "contested"])
            func number(_ value: Double?) -> String { value.map { String(format: "%.4f", $0) } ?? "" }
            for item in items {
                text += CSV.line([item.partnerId, item.palletTypeCode ?? item.palletTypeId, item.period.rawValue, item.periodStart,
                                  String(item.issued), String(item.returned), number(item.restitutionRate),
                                  String(item.outstanding), item.outstandingValueMinor.map(String.init) ?? "",
                                  String(item.aging.days0to30), String(item.aging.days31to60), String(item.aging.days61to90),
                                  String(item.aging.days90plus), String(item.presumedLosses), String(item.declaredLosses),
                                  String(item.scrapped), number(item.lossRate), number(item.rotationAverageDays),
                                  item.rotationMedianDays.map(String.init) ?? "", item.rotationP90Days.map(String.init) ?? "",
                                  String(item.overdueNotes.count), String(item.declarations), number(item.within24hShare),
                                  String(item.contested)])
            }
            return .ok(.init(body: .csv(.init(text))))
        }
        return .ok(.init(body: .json(.init(watermark: try await store.indicatorWatermark(ecosystem: caller.ecosystem),
                                           items: items))))
    }

    func recomputeIndicators(_ input: Operations.RecomputeIndicators.Input) async throws -> Operations.RecomputeIndicators.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireReader(caller, "Recomputing indicators")
        let job = try await store.enqueue(kind: "indicators.recompute", ecosystem: caller.ecosystem)
        RequestScope.current.responseHeaders.set("Location", "/v1/ecosystems/\(caller.ecosystem.lowercase)/jobs/\(job.publicID.lowercase)")
        return .accepted(.init(body: .json(.init(job))))
    }

    func listJobs(_ input: Operations.ListJobs.Input) async throws -> Operations.ListJobs.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireReader(caller, "The job list")
        let jobs = try await store.jobs(ecosystem: caller.ecosystem, state: input.query.state?.rawValue)
        return .ok(.init(body: .json(.init(items: jobs.map(Components.Schemas.Job.init)))))
    }

    func getJob(_ input: Operations.GetJob.Input) async throws -> Operations.GetJob.Output {
        let caller = try caller(in: input.path.ecosystemId)
        // The role first: a partner reads no job, and is answered alike whether the id is
        // one of the ecosystem's jobs or not.
        try requireReader(caller, "Job status")
        guard let id = UUID(parsing: input.path.jobId), let job = try await store.job(ecosystem: caller.ecosystem, publicID: id)
        else { throw Problem.notFound("job") }
        return .ok(.init(body: .json(.init(job))))
    }

    func listAlerts(_ input: Operations.ListAlerts.Input) async throws -> Operations.ListAlerts.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let alerts = try await store.alerts(ecosystem: caller.ecosystem,
                                            partner: caller.role.readsWholeEcosystem ? nil : caller.membership)
        return .ok(.init(body: .json(.init(items: alerts.filter {
            caller.role.readsWholeEcosystem || $0.partner == caller.membership
        }.map(Components.Schemas.Alert.init)))))
    }

    func acknowledgeAlert(_ input: Operations.AcknowledgeAlert.Input) async throws -> Operations.AcknowledgeAlert.Output {
        let caller = try caller(in: input.path.ecosystemId)
        guard let id = UUID(parsing: input.path.alertId), let alert = try await store.alert(ecosystem: caller.ecosystem, id: id),
              caller.role.readsWholeEcosystem || alert.partner == caller.membership
        else { throw Problem.notFound("alert") }
        try requireReader(caller, "Acknowledging alerts")
        try await store.acknowledgeAlert(ecosystem: caller.ecosystem, id: id, by: caller.membership)
        guard let updated = try await store.alert(ecosystem: caller.ecosystem, id: id) else { throw Problem.notFound("alert") }
        return .ok(.init(body: .json(.init(updated))))
    }

    func alertRuleList(_ ecosystem: UUID) async throws -> Components.Schemas.AlertRuleList {
        let rules = try await store.alertRules(ecosystem: ecosystem)
        return .init(items: rules.keys.sorted().map {
            .init(kind: .init(rawValue: $0)!, threshold: rules[$0]!, active: true)
        })
    }

    func listAlertRules(_ input: Operations.ListAlertRules.Input) async throws -> Operations.ListAlertRules.Output {
        let caller = try caller(in: input.path.ecosystemId)
        return .ok(.init(body: .json(try await alertRuleList(caller.ecosystem))))
    }

    func setAlertRule(_ input: Operations.SetAlertRule.Input) async throws -> Operations.SetAlertRule.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireShipper(caller, "set alert thresholds")
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let fraction = body.kind == .restitutionBelow || body.kind == .declarationsLate
        let valid = fraction ? (0...1).contains(body.threshold) : body.threshold >= 0 && body.threshold <= 1_000_000_000
        guard valid, body.threshold.isFinite else {
            throw Problem.validation([FieldError("threshold", fraction ? "must be a fraction between 0 and 1" : "must be zero or more")])
        }
        try await store.setAlertRule(ecosystem: caller.ecosystem, kind: body.kind.rawValue, threshold: body.threshold,
                                     active: body.active ?? true, by: caller.membership)
        return .ok(.init(body: .json(try await alertRuleList(caller.ecosystem))))
    }

    func listWebhooks(_ input: Operations.ListWebhooks.Input) async throws -> Operations.ListWebhooks.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireShipper(caller, "manage webhooks")
        let hooks = try await store.webhooks(ecosystem: caller.ecosystem)
        return .ok(.init(body: .json(.init(items: hooks.map { .init(id: $0.id.lowercase, url: $0.url, active: $0.active) }))))
    }

    func addWebhook(_ input: Operations.AddWebhook.Input) async throws -> Operations.AddWebhook.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireShipper(caller, "manage webhooks")
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let url = try await checkedWebhookURL(body.url)
        let hook = try await store.addWebhook(ecosystem: caller.ecosystem, url: url, by: caller.membership)
        return .created(.init(body: .json(.init(id: hook.id.lowercase, url: hook.url, active: hook.active, secret: hook.secret))))
    }

    /// A webhook must not reach inside: a host that is, or resolves to, a loopback,
    /// private, link-local, shared, multicast or unspecified address is refused (422), as
    /// the sender refuses it again at each delivery. A name that does not resolve now is
    /// accepted: the sender resolves and checks it when it delivers.
    func checkedWebhookURL(_ text: String) async throws -> WebhookURL {
        let url: WebhookURL
        do {
            url = try WebhookURL(parsing: text)
        } catch {
            throw Problem.validation([FieldError("url", error.description)])
        }
        guard case .refused(let address, let range) = await WebhookDestination.resolve(url, rule: webhookRule) else { return url }
        let message = switch url.host {
        case .address: "must not reach inside: \(address) is a \(range.rawValue) address"
        case .name(let name): "must not reach inside: \(name) resolves to \(address), a \(range.rawValue) address"
        }
        throw Problem.validation([FieldError("url", message)])
    }

    func removeWebhook(_ input: Operations.RemoveWebhook.Input) async throws -> Operations.RemoveWebhook.Output {
        let caller = try caller(in: input.path.ecosystemId)
        guard let id = UUID(parsing: input.path.webhookId) else { throw Problem.notFound("webhook") }
        try requireShipper(caller, "manage webhooks")
        try await store.removeWebhook(ecosystem: caller.ecosystem, id: id, by: caller.membership)
        return .noContent(.init())
    }
}

extension Components.Schemas.Indicator {
    init(_ row: IndicatorRow, code: String?) {
        let figures = row.figures
        let rate = figures.restitutionRate
        self.init(
            partnerId: row.key.partner.lowercase, palletTypeId: row.key.palletType.lowercase, palletTypeCode: code,
            period: .init(rawValue: row.period)!, periodStart: Instant.date(ofDay: row.startDay),
            periodEnd: Instant.date(ofDay: row.endDay), issued: figures.issued, spotReturned: figures.spotReturned,
            laterReturned: figures.laterReturned, returned: figures.returned, restitutionRate: rate,
            restitutionRateDisplay: rate.map { min(1, $0) },
            cumulativeRestitutionRate: row.period == "to_date" && figures.issued > 0
                ? 1 - Double(figures.outstanding) / Double(figures.issued) : nil,
            declaredLosses: figures.declaredLosses, scrapped: figures.scrapped,
            presumedLosses: figures.presumedLosses, lossRate: figures.lossRate, outstanding: figures.outstanding,
            outstandingValueMinor: row.outstandingValueMinor, currency: row.currency,
            aging: .init(days0to30: figures.aging0to30, days31to60: figures.aging31to60, days61to90: figures.aging61to90,
                         days90plus: figures.aging90plus),
            rotationAverageDays: figures.rotationAverageDays, rotationMedianDays: figures.rotationMedianDays,
            rotationP90Days: figures.rotationP90Days,
            overdueNotes: .init(count: row.overdueNotesCount, quantity: row.overdueNotesQuantity, valueMinor: row.overdueNotesValueMinor),
            declarations: row.declarations, latenessMedianSeconds: row.latenessMedianSeconds,
            latenessP90Seconds: row.latenessP90Seconds, declaredWithin24h: row.declaredWithin24h,
            within24hShare: row.declarations > 0 ? Double(row.declaredWithin24h) / Double(row.declarations) : nil,
            contested: row.contested,
            discrepancyRate: row.declarations > 0 ? Double(row.contested) / Double(row.declarations) : nil)
    }
}

extension Components.Schemas.Job {
    init(_ job: Job) {
        self.init(id: job.publicID.lowercase, kind: job.kind, state: .init(rawValue: job.state)!, attempts: job.attempts,
                  maxAttempts: job.maxAttempts, runAt: job.runAt, lastError: job.lastError, progress: job.progress,
                  createdAt: job.createdAt, finishedAt: job.finishedAt)
    }
}

extension Components.Schemas.Alert {
    init(_ alert: AlertRecord) {
        self.init(id: alert.id.lowercase, kind: alert.kind, partnerId: alert.partner?.lowercase,
                  palletTypeId: alert.palletType?.lowercase, message: alert.message, value: alert.value,
                  threshold: alert.threshold, createdAt: alert.createdAt, acknowledgedAt: alert.acknowledgedAt)
    }
}
