import Foundation
import PalletFlowCore
import PalletFlowStore
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Delivers an alert to a webhook, signed; a failure makes the job retry with backoff.
public struct WebhookSender: Sendable {
    public let store: Store
    public var timeout: TimeInterval = 10

    public init(store: Store) { self.store = store }

    public struct DeliveryFailed: Error, CustomStringConvertible {
        public var description: String
    }

    public func deliver(ecosystem: UUID, webhook webhookID: UUID, alert alertID: UUID, attempt: Int) async throws {
        guard let webhook = try await store.webhooks(ecosystem: ecosystem).first(where: { $0.id == webhookID }), webhook.active,
              let alert = try await store.alert(ecosystem: ecosystem, id: alertID)
        else { return }
        let object: [String: Any] = [
            "type": "alert", "ecosystemId": ecosystem.uuidString.lowercased(),
            "alert": [
                "id": alert.id.uuidString.lowercased(), "kind": alert.kind, "message": alert.message,
                "partnerId": alert.partner?.uuidString.lowercased() as Any, "palletTypeId": alert.palletType?.uuidString.lowercased() as Any,
                "value": alert.value as Any, "threshold": alert.threshold as Any,
                "createdAt": Instant(alert.createdAt).rfc3339(keepingOffset: false),
            ],
        ]
        let body = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        // The receiver checks this against its own clock to refuse replays: the machine's
        // time, not the business clock (which a rehearsal may shift).
        let timestamp = String(Int(Date().timeIntervalSince1970))
        guard let url = URL(string: webhook.url) else { return }
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(timestamp, forHTTPHeaderField: "X-PalletFlow-Timestamp")
        request.setValue(WebhookSignature.sign(secret: webhook.secret, timestamp: timestamp, body: Array(body)),
                         forHTTPHeaderField: "X-PalletFlow-Signature")
        request.setValue(alert.id.uuidString.lowercased(), forHTTPHeaderField: "X-PalletFlow-Delivery")
        do {
            let (_, response) = try await URLSession.shared.data(for: request)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            try await store.recordDelivery(ecosystem: ecosystem, webhook: webhook.id, alert: alert.id, status: status,
                                           error: nil, attempt: attempt)
            guard (200..<300).contains(status) else { throw DeliveryFailed(description: "webhook answered HTTP \(status)") }
        } catch let error as DeliveryFailed {
            throw error
        } catch {
            try await store.recordDelivery(ecosystem: ecosystem, webhook: webhook.id, alert: alert.id, status: nil,
                                           error: String(describing: error), attempt: attempt)
            throw DeliveryFailed(description: "webhook unreachable: \(error)")
        }
    }
}
