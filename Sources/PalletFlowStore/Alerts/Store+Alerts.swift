import Crypto
import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

public struct AlertRecord: Sendable, Hashable {
    public var id: UUID
    public var kind: String
    public var partner: UUID?
    public var palletType: UUID?
    public var message: String
    public var value: Double?
    public var threshold: Double?
    public var createdAt: Date
    public var acknowledgedAt: Date?
}

public struct AlertCandidate: Sendable, Hashable {
    public var kind: String
    public var partner: UUID?
    public var palletType: UUID?
    public var dedupeKey: String
    public var message: String
    public var value: Double?
    public var threshold: Double?
    public init(kind: String, partner: UUID?, palletType: UUID?, dedupeKey: String, message: String, value: Double?,
                threshold: Double?) {
        self.kind = kind
        self.partner = partner
        self.palletType = palletType
        self.dedupeKey = dedupeKey
        self.message = message
        self.value = value
        self.threshold = threshold
    }
}

public struct WebhookRecord: Sendable, Hashable {
    public var id: UUID
    public var url: String
    public var secret: String
    public var active: Bool
}

/// One indicator row as the alert rules read it.
public struct IndicatorSnapshot: Sendable, Hashable {
    public var partner: UUID
    public var palletType: UUID
    public var period: String
    public var periodStart: String
    public var issued: Int64
    public var returned: Int64
    public var outstanding: Int64
    public var overdueNotes: Int64
    public var declarations: Int64
    public var declaredWithin24h: Int64
}

extension Store {
    public func alertRules(ecosystem: UUID) async throws -> [String: Double] {
        var rules: [String: Double] = [:]
        for try await (kind, threshold) in try await client.query("""
            SELECT kind, threshold FROM alert_rules WHERE ecosystem_id = \(ecosystem) AND active
            """, logger: logger).decode((String, Double).self) { rules[kind] = threshold }
        return rules
    }

    public func setAlertRule(ecosystem: UUID, kind: String, threshold: Double, active: Bool, by member: UUID) async throws {
        try await transaction { connection in
            try await connection.query("""
                INSERT INTO alert_rules (ecosystem_id, kind, threshold, active) VALUES (\(ecosystem), \(kind), \(threshold), \(active))
                ON CONFLICT (ecosystem_id, kind) DO UPDATE SET threshold = excluded.threshold, active = excluded.active
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "alert_rule.set", subject: nil)
        }
    }

    /// The last complete month and the to-date rows, what the rules look at (a month in
    /// progress would raise restitution alerts before its returns had a chance).
    public func latestIndicators(ecosystem: UUID) async throws -> [IndicatorSnapshot] {
        var result: [IndicatorSnapshot] = []
        for try await row in try await client.query("""
            SELECT DISTINCT ON (partner_id, pallet_type_id, period) partner_id, pallet_type_id, period::text, period_start::text,
                   issued, spot_returned + later_returned, outstanding, overdue_notes_count, declarations, declared_within_24h
            FROM indicators WHERE ecosystem_id = \(ecosystem)
              AND (period = 'to_date' OR (period = 'month' AND period_end <= \(Instant.date(ofDay: today))::date))
            ORDER BY partner_id, pallet_type_id, period, period_start DESC
            """, logger: logger) {
            let (partner, type, period, start, issued, returned, outstanding, overdue, declarations, within) =
                try row.decode((UUID, UUID, String, String, Int64, Int64, Int64, Int64, Int64, Int64).self)
            result.append(IndicatorSnapshot(partner: partner, palletType: type, period: period, periodStart: start,
                                            issued: issued, returned: returned, outstanding: outstanding,
                                            overdueNotes: overdue, declarations: declarations, declaredWithin24h: within))
        }
        return result
    }

    /// Discrepancies open for more than `days` days.
    public func staleDiscrepancies(ecosystem: UUID, olderThanDays days: Double) async throws -> [(UUID, UUID, Double)] {
        var result: [(UUID, UUID, Double)] = []
        for try await (id, movement, age) in try await client.query("""
            SELECT id, movement_id, extract(epoch FROM \(nowDate) - opened_at) / 86400 FROM discrepancies
            WHERE ecosystem_id = \(ecosystem) AND resolved_at IS NULL
              AND opened_at < \(nowDate) - \(days) * interval '1 day'
            """, logger: logger).decode((UUID, UUID, Double).self) { result.append((id, movement, age)) }
        return result
    }

    /// Creates the alerts not raised before (deduplicated by key) and, in the same
    /// transaction, a delivery job per active webhook. Returns the new alerts.
    @discardableResult
    public func raiseAlerts(ecosystem: UUID, _ candidates: [AlertCandidate]) async throws -> [UUID] {
        guard !candidates.isEmpty else { return [] }
        return try await transaction { connection in
            var created: [UUID] = []
            for candidate in candidates {
                let id = newID()
                for try await _ in try await connection.query("""
                    INSERT INTO alerts (ecosystem_id, id, kind, partner_id, pallet_type_id, dedupe_key, message, value, threshold,
                                        created_at)
                    VALUES (\(ecosystem), \(id), \(candidate.kind), \(candidate.partner), \(candidate.palletType),
                            \(candidate.dedupeKey), \(candidate.message), \(candidate.value), \(candidate.threshold), \(nowDate))
                    ON CONFLICT ON CONSTRAINT alerts_dedupe_key DO NOTHING
                    RETURNING id
                    """, logger: logger) { created.append(id) }
            }
            for alert in created {
                for try await webhook in try await connection.query("""
                    SELECT id FROM webhooks WHERE ecosystem_id = \(ecosystem) AND active
                    """, logger: logger).decode(UUID.self) {
                    try await enqueue(kind: "webhook.deliver", ecosystem: ecosystem,
                                      payload: ["alert": alert.uuidString, "webhook": webhook.uuidString, "dedupe": "\(alert)-\(webhook)"],
                                      on: connection)
                }
            }
            return created
        }
    }

    public func alerts(ecosystem: UUID, partner: UUID?, includeAcknowledged: Bool = true) async throws -> [AlertRecord] {
        let none = noneID
        var result: [AlertRecord] = []
        for try await row in try await client.query("""
            SELECT id, kind, partner_id, pallet_type_id, message, value, threshold, created_at, acknowledged_at FROM alerts
            WHERE ecosystem_id = \(ecosystem) AND (\(partner ?? none) = \(none) OR partner_id = \(partner ?? none))
              AND (\(includeAcknowledged) OR acknowledged_at IS NULL)
            ORDER BY created_at DESC LIMIT 500
            """, logger: logger) {
            let (id, kind, partner, type, message, value, threshold, created, acknowledged) =
                try row.decode((UUID, String, UUID?, UUID?, String, Double?, Double?, Date, Date?).self)
            result.append(AlertRecord(id: id, kind: kind, partner: partner, palletType: type, message: message, value: value,
                                      threshold: threshold, createdAt: created, acknowledgedAt: acknowledged))
        }
        return result
    }

    public func alert(ecosystem: UUID, id: UUID) async throws -> AlertRecord? {
        try await alerts(ecosystem: ecosystem, partner: nil).first { $0.id == id }
    }

    public func acknowledgeAlert(ecosystem: UUID, id: UUID, by member: UUID) async throws {
        try await client.query("""
            UPDATE alerts SET acknowledged_at = coalesce(acknowledged_at, \(nowDate)), acknowledged_by = coalesce(acknowledged_by, \(member))
            WHERE ecosystem_id = \(ecosystem) AND id = \(id)
            """, logger: logger)
    }

    /// Stores a URL that passed `WebhookURL`'s reading, as it was written; whether its
    /// host may be reached is the caller's check (it needs DNS) and the sender's again.
    public func addWebhook(ecosystem: UUID, url webhookURL: WebhookURL, by member: UUID) async throws -> WebhookRecord {
        let url = webhookURL.text
        let id = newID()
        var bytes = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255, using: &generator) }
        let secret = "whsec_" + bytes.map { String(format: "%02x", $0) }.joined()
        try await transaction { connection in
            try await connection.query("""
                INSERT INTO webhooks (ecosystem_id, id, url, secret, created_at)
                VALUES (\(ecosystem), \(id), \(url), \(secret), \(nowDate))
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystem, by: member, action: "webhook.add", subject: id)
        }
        return WebhookRecord(id: id, url: url, secret: secret, active: true)
    }

    public func webhooks(ecosystem: UUID) async throws -> [WebhookRecord] {
        var result: [WebhookRecord] = []
        for try await (id, url, secret, active) in try await client.query("""
            SELECT id, url, secret, active FROM webhooks WHERE ecosystem_id = \(ecosystem) ORDER BY created_at
            """, logger: logger).decode((UUID, String, String, Bool).self) {
            result.append(WebhookRecord(id: id, url: url, secret: secret, active: active))
        }
        return result
    }

    public func removeWebhook(ecosystem: UUID, id: UUID, by member: UUID) async throws {
        try await transaction { connection in
            var found = false
            for try await _ in try await connection.query("""
                UPDATE webhooks SET active = false WHERE ecosystem_id = \(ecosystem) AND id = \(id) RETURNING id
                """, logger: logger) { found = true }
            guard found else { throw StoreError.notFound("webhook") }
            try await audit(connection, ecosystem: ecosystem, by: member, action: "webhook.remove", subject: id)
        }
    }

    /// One attempt: the status when the receiver answered, and the error only in the
    /// outcome's fixed words ("refused", "timeout", "HTTP <status>"), never the remote's text.
    public func recordDelivery(ecosystem: UUID, webhook: UUID, alert: UUID?, outcome: WebhookOutcome, attempt: Int) async throws {
        let status = outcome.status
        let error = outcome.error
        try await client.query("""
            INSERT INTO webhook_deliveries (ecosystem_id, webhook_id, alert_id, status, error, attempt, delivered_at)
            VALUES (\(ecosystem), \(webhook), \(alert), \(status), \(error), \(attempt), \(nowDate))
            """, logger: logger)
    }
}

/// The signature a webhook receiver checks: HMAC-SHA256 over "timestamp.body" with the
/// webhook's secret, hex, as `X-PalletFlow-Signature: sha256=<hex>`.
public enum WebhookSignature {
    public static func sign(secret: String, timestamp: String, body: [UInt8]) -> String {
        let key = SymmetricKey(data: Data(secret.utf8))
        var message = Data(timestamp.utf8)
        message.append(UInt8(ascii: "."))
        message.append(contentsOf: body)
        let code = HMAC<SHA256>.authenticationCode(for: message, using: key)
        return "sha256=" + code.map { String(format: "%02x", $0) }.joined()
    }

    public static func verify(secret: String, timestamp: String, body: [UInt8], signature: String) -> Bool {
        let expected = Array(sign(secret: secret, timestamp: timestamp, body: body).utf8)
        let given = Array(signature.utf8)
        guard expected.count == given.count else { return false }
        // Constant time: every byte is compared whatever the first difference.
        return zip(expected, given).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
