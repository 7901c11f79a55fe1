import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import PalletFlowCore
import PalletFlowStore

/// Delivers an alert to a webhook, signed; a failure makes the job retry with backoff.
///
/// The URL is read again with the registration's rule, its host resolved once and every
/// address checked (`WebhookDestination`); the request then goes to the checked address,
/// with the host name kept for the Host header, TLS SNI and certificate check. Redirects
/// are not followed. What is kept of a failure is "refused", "timeout" or "HTTP <status>".
public struct WebhookSender: Sendable {
    public let store: Store
    public var rule: WebhookAddressRule
    /// For the connection, and again for the whole exchange.
    public var timeout: TimeAmount

    public init(store: Store, rule: WebhookAddressRule = .init(), timeout: TimeAmount = .seconds(10)) {
        self.store = store
        self.rule = rule
        self.timeout = timeout
    }

    public struct DeliveryFailed: Error, CustomStringConvertible {
        public var description: String
    }

    public func deliver(ecosystem: UUID, webhook webhookID: UUID, alert alertID: UUID, attempt: Int) async throws {
        guard let webhook = try await store.webhooks(ecosystem: ecosystem).first(where: { $0.id == webhookID }), webhook.active,
              let alert = try await store.alert(ecosystem: ecosystem, id: alertID)
        else { return }
        let body = try Self.payload(ecosystem: ecosystem, alert: alert)
        // The receiver checks this against its own clock to refuse replays: the machine's
        // time, not the business clock (which a rehearsal may shift).
        let timestamp = String(Int(Date().timeIntervalSince1970))
        let headers = [
            ("Content-Type", "application/json"),
            ("X-PalletFlow-Timestamp", timestamp),
            ("X-PalletFlow-Signature", WebhookSignature.sign(secret: webhook.secret, timestamp: timestamp, body: body)),
            ("X-PalletFlow-Delivery", alert.id.uuidString.lowercased()),
        ]
        let outcome = await post(webhook.url, body: body, headers: headers)
        try await store.recordDelivery(ecosystem: ecosystem, webhook: webhook.id, alert: alert.id, outcome: outcome, attempt: attempt)
        if let error = outcome.error {
            store.logger.notice("webhook delivery failed",
                                metadata: ["webhook": "\(webhook.id.uuidString.lowercased())", "outcome": "\(error)"])
            throw DeliveryFailed(description: "webhook delivery: \(error)")
        }
    }

    static func payload(ecosystem: UUID, alert: AlertRecord) throws -> [UInt8] {
        let object: [String: Any] = [
            "type": "alert", "ecosystemId": ecosystem.uuidString.lowercased(),
            "alert": [
                "id": alert.id.uuidString.lowercased(), "kind": alert.kind, "message": alert.message,
                "partnerId": alert.partner?.uuidString.lowercased() as Any, "palletTypeId": alert.palletType?.uuidString.lowercased() as Any,
                "value": alert.value as Any, "threshold": alert.threshold as Any,
                "createdAt": Instant(alert.createdAt).rfc3339(keepingOffset: false),
            ],
        ]
        return Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
    }

    /// One POST, or the reason it was not made. The answer's body is never read.
    public func post(_ text: String, body: [UInt8], headers: [(String, String)]) async -> WebhookOutcome {
        let logger = store.logger
        guard let url = try? WebhookURL(parsing: text) else {
            // The URL itself is not logged: its query may hold the receiver's own token.
            logger.notice("webhook refused: its URL no longer passes the rule")
            return .refused
        }
        let address: IPAddress
        switch await WebhookDestination.resolve(url, rule: rule) {
        case .allowed(let checked):
            address = checked
        case .refused(let refused, let range):
            logger.notice("webhook refused: its host reaches a \(range.rawValue) address",
                          metadata: ["host": "\(url.hostText)", "address": "\(refused)"])
            return .refused
        case .unresolved:
            logger.notice("webhook refused: its host does not resolve", metadata: ["host": "\(url.hostText)"])
            return .refused
        }
        return await post(url, connectingTo: address, body: body, headers: headers)
    }

    /// Sends to `address`, which the caller checked, without resolving the name again; the
    /// name stays in the Host header and in TLS.
    func post(_ url: WebhookURL, connectingTo address: IPAddress, body: [UInt8], headers: [(String, String)]) async
        -> WebhookOutcome
    {
        let logger = store.logger
        // AsyncHTTPClient resolves names itself and takes a fixed address only as its
        // configuration's dnsOverride (which keeps the name for SNI and Host): hence a
        // client per delivery, over the process's shared event loops, shut down right after.
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                                     timeout: .init(connect: timeout, read: timeout))
        if case .name(let name) = url.host { configuration.dnsOverride = [name: address.description] }
        // A refused connection is an answer ("refused"), not something to retry until the
        // deadline turns it into "timeout": the job queue retries the whole delivery later.
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        var request = HTTPClientRequest(url: url.requestURL)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(body)
        let outcome: WebhookOutcome
        do {
            let response = try await client.execute(request, timeout: timeout)
            outcome = .answered(status: Int(response.status.code))
        } catch {
            outcome = Self.isTimeout(error) ? .timeout : .refused
            // The operator's log gets the local error (never stored, never the remote's body).
            logger.notice("webhook not delivered", metadata: ["host": "\(url.hostText)", "address": "\(address)",
                                                              "error": "\(String(reflecting: error))"])
        }
        do {
            try await client.shutdown()
        } catch {
            logger.warning("webhook HTTP client did not shut down cleanly", metadata: ["error": "\(error)"])
        }
        return outcome
    }

    static func isTimeout(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError {
            return [.deadlineExceeded, .connectTimeout, .readTimeout, .writeTimeout, .tlsHandshakeTimeout].contains(error)
        }
        if let error = error as? ChannelError, case .connectTimeout = error { return true }
        return false
    }
}
