import Foundation
import Logging
import NIOCore
import PalletFlowCore
import PostgresNIO

/// A dashboard session as the web layer needs it: who, and the form token.
public struct WebSession: Sendable {
    public var id: UUID
    public var caller: Caller
    public var csrfToken: String
    public var expiresAt: Date
}

extension Store {
    /// Opens a session for a live token; the returned secret goes into the cookie.
    public func openWebSession(caller: Caller, lifetime: Duration) async throws -> (WebSession, TokenSecret) {
        let secret = TokenSecret.generate()
        let csrf = TokenSecret.generate().text
        let id = newID()
        let seconds = Double(lifetime.components.seconds)
        let expires = nowDate.addingTimeInterval(seconds)
        try await transaction { connection in
            try await connection.query("""
                INSERT INTO web_sessions (ecosystem_id, id, secret_hash, token_id, csrf_token, expires_at, created_at)
                VALUES (\(caller.ecosystem), \(id), \(ByteBuffer(bytes: secret.hash)), \(caller.token), \(csrf), \(expires),
                        \(nowDate))
                """, logger: logger)
            try await audit(connection, ecosystem: caller.ecosystem, by: caller.membership, action: "session.open", subject: id)
        }
        return (WebSession(id: id, caller: caller, csrfToken: csrf, expiresAt: expires), secret)
    }

    /// The live session behind a cookie secret: not ended, not expired, its token not
    /// revoked and its membership active.
    public func webSession(_ secret: TokenSecret) async throws -> WebSession? {
        guard secret.isWellFormed else { return nil }
        let rows = try await client.query("""
            SELECT s.id, s.csrf_token, s.expires_at, t.ecosystem_id, t.membership_id, o.id, m.name, m.role::text, t.id
            FROM web_sessions s
            JOIN api_tokens t ON t.ecosystem_id = s.ecosystem_id AND t.id = s.token_id
            JOIN memberships m ON m.ecosystem_id = t.ecosystem_id AND m.id = t.membership_id
            JOIN organisations o ON o.id = m.organisation_id
            WHERE s.secret_hash = \(ByteBuffer(bytes: secret.hash)) AND s.ended_at IS NULL AND s.expires_at > \(nowDate)
              AND t.revoked_at IS NULL AND m.active
            """, logger: logger)
        for try await (id, csrf, expires, ecosystem, membership, organisation, name, role, token) in rows.decode(
            (UUID, String, Date, UUID, UUID, UUID, String, String, UUID).self) {
            guard let role = Role(rawValue: role) else { return nil }
            return WebSession(id: id, caller: Caller(ecosystem: ecosystem, membership: membership, organisation: organisation,
                                                     organisationName: name, role: role, token: token),
                              csrfToken: csrf, expiresAt: expires)
        }
        return nil
    }

    public func endWebSession(_ session: WebSession) async throws {
        try await transaction { connection in
            try await connection.query("""
                UPDATE web_sessions SET ended_at = \(nowDate)
                WHERE ecosystem_id = \(session.caller.ecosystem) AND id = \(session.id) AND ended_at IS NULL
                """, logger: logger)
            try await audit(connection, ecosystem: session.caller.ecosystem, by: session.caller.membership,
                            action: "session.end", subject: session.id)
        }
    }
}
