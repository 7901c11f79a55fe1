import Foundation
import Logging
import PalletFlowCore
import PostgresNIO

extension Store {
    // MARK: Ecosystems

    /// Bootstrap: a new ecosystem with its shipper, and the shipper's first admin token.
    public func createEcosystem(name: String, shipperName: String, shipperPGLN: String?, currency: String = "EUR",
                                lossHorizonDays: Int = 120, noteDueDays: Int = 30) async throws
        -> (ecosystem: EcosystemRecord, shipper: MemberRecord, token: TokenSecret)
    {
        let ecosystemID = newID()
        let secret = TokenSecret.generate()
        let shipper = try await transaction { connection in
            try await connection.query("""
                INSERT INTO ecosystems (id, name, currency, loss_horizon_days, note_due_days, created_at)
                VALUES (\(ecosystemID), \(name), \(currency), \(lossHorizonDays), \(noteDueDays), \(nowDate))
                """, logger: logger)
            let shipper = try await insertMember(connection, ecosystem: ecosystemID, name: shipperName,
                                                 pgln: shipperPGLN, role: .shipper)
            try await connection.query("""
                INSERT INTO api_tokens (ecosystem_id, id, membership_id, name, token_hash, created_at)
                VALUES (\(ecosystemID), \(newID()), \(shipper.id), 'bootstrap admin', \(ByteBuffer(bytes: secret.hash)),
                        \(nowDate))
                """, logger: logger)
            try await audit(connection, ecosystem: ecosystemID, by: nil, action: "ecosystem.create", subject: ecosystemID)
            return shipper
        }
        guard let ecosystem = try await ecosystem(ecosystemID) else { throw StoreError.notFound("ecosystem") }
        return (ecosystem, shipper, secret)
    }

    public func ecosystem(_ id: UUID) async throws -> EcosystemRecord? {
        try await ecosystemAndDirectoryVersion(id)?.0
    }

    /// The ecosystem and the version of its directory, which every change to its members,
    /// sites, pallet types or their organisations bumps (sql/0012): one row tells a cached
    /// directory whether it is still current.
    public func ecosystemAndDirectoryVersion(_ id: UUID) async throws -> (EcosystemRecord, directoryVersion: Int64)? {
        let rows = try await client.query("""
            SELECT id, name, loss_horizon_days, note_due_days, currency::text, created_at, directory_version
            FROM ecosystems WHERE id = \(id)
            """, logger: logger)
        for try await (id, name, horizon, due, currency, created, version)
            in rows.decode((UUID, String, Int, Int, String, Date, Int64).self)
        {
            return (EcosystemRecord(id: id, name: name, lossHorizonDays: horizon, noteDueDays: due, currency: currency,
                                    createdAt: created), version)
        }
        return nil
    }

    public func ecosystems(named name: String) async throws -> [EcosystemRecord] {
        var result: [EcosystemRecord] = []
        for try await (id, name, horizon, due, currency, created) in try await client.query("""
            SELECT id, name, loss_horizon_days, note_due_days, currency::text, created_at FROM ecosystems
            WHERE name = \(name) ORDER BY created_at
            """, logger: logger).decode((UUID, String, Int, Int, String, Date).self) {
            result.append(EcosystemRecord(id: id, name: name, lossHorizonDays: horizon, noteDueDays: due,
                                          currency: currency, createdAt: created))
        }
        return result
    }

    // MARK: Members

    /// Adds an organisation to the ecosystem. An organisation with the same PGLN is reused:
    /// one carrier serving several shippers is one organisation with several memberships.
    public func addMember(ecosystem: UUID, name: String, pgln: String?, role: Role, by actor: UUID?) async throws -> MemberRecord {
        do {
            return try await transaction { connection in
                let member = try await insertMember(connection, ecosystem: ecosystem, name: name, pgln: pgln, role: role)
                try await audit(connection, ecosystem: ecosystem, by: actor, action: "member.add", subject: member.id)
                return member
            }
        } catch let error as PSQLError where error.sqlState == SQLState.uniqueViolation {
            if error.constraintName == "memberships_one_shipper" {
                throw StoreError.conflict("this ecosystem already has its shipper; an ecosystem is one shipper's network")
            }
            throw StoreError.conflict("this organisation is already a member of the ecosystem")
        }
    }

    func insertMember(_ connection: PostgresConnection, ecosystem: UUID, name: String, pgln: String?, role: Role) async throws -> MemberRecord {
        // The organisation behind a PGLN is shared by every ecosystem it belongs to; its name
        // in this ecosystem is the one given here, never what another ecosystem called it.
        var organisation = newID()
        if let pgln {
            let existing = try await connection.query("SELECT id FROM organisations WHERE pgln = \(pgln)", logger: logger)
            for try await id in existing.decode(UUID.self) { organisation = id }
        }
        try await connection.query("""
            INSERT INTO organisations (id, name, pgln, created_at)
            VALUES (\(organisation), \(name), \(pgln), \(nowDate))
            ON CONFLICT (id) DO NOTHING
            """, logger: logger)
        let id = newID()
        try await connection.query("""
            INSERT INTO memberships (ecosystem_id, id, organisation_id, role, created_at, name)
            VALUES (\(ecosystem), \(id), \(organisation), \(role.rawValue)::member_role, \(nowDate), \(name))
            """, logger: logger)
        return MemberRecord(id: id, organisation: organisation, name: name, pgln: pgln, role: role,
                            active: true, createdAt: nowDate)
    }

    public func members(ecosystem: UUID) async throws -> [MemberRecord] {
        var result: [MemberRecord] = []
        for try await (id, organisation, name, pgln, role, active, created) in try await client.query("""
            SELECT m.id, o.id, m.name, o.pgln, m.role::text, m.active, m.created_at
            FROM memberships m JOIN organisations o ON o.id = m.organisation_id
            WHERE m.ecosystem_id = \(ecosystem) ORDER BY m.role, m.name
            """, logger: logger).decode((UUID, UUID, String, String?, String, Bool, Date).self) {
            result.append(MemberRecord(id: id, organisation: organisation, name: name, pgln: pgln,
                                       role: Role(rawValue: role) ?? .customer, active: active, createdAt: created))
        }
        return result
    }

    public func member(ecosystem: UUID, id: UUID) async throws -> MemberRecord? {
        try await members(ecosystem: ecosystem).first { $0.id == id }
    }

    public func setMemberActive(ecosystem: UUID, id: UUID, active: Bool, by actor: UUID) async throws {
        try await transaction { connection in
            let rows = try await connection.query("""
                UPDATE memberships SET active = \(active) WHERE ecosystem_id = \(ecosystem) AND id = \(id) RETURNING id
                """, logger: logger)
            var found = false
            for try await _ in rows { found = true }
            guard found else { throw StoreError.notFound("member") }
            if !active {
                try await connection.query("""
                    UPDATE api_tokens SET revoked_at = \(nowDate)
                    WHERE ecosystem_id = \(ecosystem) AND membership_id = \(id) AND revoked_at IS NULL
                    """, logger: logger)
            }
            try await audit(connection, ecosystem: ecosystem, by: actor, action: active ? "member.activate" : "member.deactivate",
                            subject: id)
        }
        if !active { tokenCache.invalidate { $0.membership == id } }
    }

    // MARK: Sites

    public func addSite(ecosystem: UUID, member: UUID, name: String, sgln: String?, address: String?, by actor: UUID) async throws -> SiteRecord {
        let id = newID()
        do {
            try await transaction { connection in
                try await connection.query("""
                    INSERT INTO sites (ecosystem_id, id, membership_id, name, sgln, address, created_at)
                    VALUES (\(ecosystem), \(id), \(member), \(name), \(sgln), \(address), \(nowDate))
                    """, logger: logger)
                try await audit(connection, ecosystem: ecosystem, by: actor, action: "site.add", subject: id)
            }
        } catch let error as PSQLError where error.sqlState == SQLState.uniqueViolation {
            throw StoreError.conflict("a site with SGLN \(sgln ?? "") already exists in this ecosystem")
        } catch let error as PSQLError where error.sqlState == SQLState.foreignKeyViolation {
            throw StoreError.invalid([FieldError("member", "is not a member of this ecosystem")])
        }
        return SiteRecord(id: id, member: member, name: name, sgln: sgln, address: address, active: true)
    }

    public func sites(ecosystem: UUID) async throws -> [SiteRecord] {
        var result: [SiteRecord] = []
        for try await (id, member, name, sgln, address, active) in try await client.query("""
            SELECT id, membership_id, name, sgln, address, active FROM sites
            WHERE ecosystem_id = \(ecosystem) ORDER BY name
            """, logger: logger).decode((UUID, UUID, String, String?, String?, Bool).self) {
            result.append(SiteRecord(id: id, member: member, name: name, sgln: sgln, address: address, active: active))
        }
        return result
    }

    // MARK: Pallet types

    public struct NewPalletType: Sendable {
        public var code: String
        public var name: String
        public var lengthMillimetres: Int?
        public var widthMillimetres: Int?
        public var heightMillimetres: Int?
        public var exchangeable: Bool
        public var graiClass: String?
        public var unitValueMinor: Int64?
        public var currency: String?
        public var valueValidFrom: Date?

        public init(code: String, name: String, lengthMillimetres: Int? = nil, widthMillimetres: Int? = nil,
                    heightMillimetres: Int? = nil, exchangeable: Bool = true, graiClass: String? = nil,
                    unitValueMinor: Int64? = nil, currency: String? = nil, valueValidFrom: Date? = nil) {
            self.code = code
            self.name = name
            self.lengthMillimetres = lengthMillimetres
            self.widthMillimetres = widthMillimetres
            self.heightMillimetres = heightMillimetres
            self.exchangeable = exchangeable
            self.graiClass = graiClass
            self.unitValueMinor = unitValueMinor
            self.currency = currency
            self.valueValidFrom = valueValidFrom
        }
    }

    public func addPalletType(ecosystem: UUID, _ type: NewPalletType, by actor: UUID?) async throws -> PalletTypeRecord {
        let id = newID()
        do {
            try await transaction { connection in
                try await connection.query("""
                    INSERT INTO pallet_types (ecosystem_id, id, code, name, length_mm, width_mm, height_mm, exchangeable, grai_class,
                                              created_at)
                    VALUES (\(ecosystem), \(id), \(type.code), \(type.name), \(type.lengthMillimetres), \(type.widthMillimetres),
                            \(type.heightMillimetres), \(type.exchangeable), \(type.graiClass), \(nowDate))
                    """, logger: logger)
                if let value = type.unitValueMinor {
                    try await connection.query("""
                        INSERT INTO pallet_type_values (ecosystem_id, pallet_type_id, valid_from, unit_value_minor, currency)
                        VALUES (\(ecosystem), \(id), \(type.valueValidFrom ?? Date(timeIntervalSince1970: 0))::date, \(value),
                                \(type.currency ?? "EUR"))
                        """, logger: logger)
                }
                try await audit(connection, ecosystem: ecosystem, by: actor, action: "pallet_type.add", subject: id)
            }
        } catch let error as PSQLError where error.sqlState == SQLState.uniqueViolation {
            if error.constraintName == "pallet_types_grai_key" {
                throw StoreError.conflict("another pallet type already has GRAI class \(type.graiClass ?? "")")
            }
            throw StoreError.conflict("a pallet type with code \(type.code) already exists in this ecosystem")
        }
        guard let record = try await palletTypes(ecosystem: ecosystem).first(where: { $0.id == id }) else {
            throw StoreError.notFound("pallet type")
        }
        return record
    }

    public func addPalletTypeValue(ecosystem: UUID, palletType: UUID, validFrom: Date, unitValueMinor: Int64,
                                   currency: String, by actor: UUID) async throws {
        do {
            try await transaction { connection in
                try await connection.query("""
                    INSERT INTO pallet_type_values (ecosystem_id, pallet_type_id, valid_from, unit_value_minor, currency)
                    VALUES (\(ecosystem), \(palletType), \(validFrom)::date, \(unitValueMinor), \(currency))
                    ON CONFLICT (ecosystem_id, pallet_type_id, valid_from)
                    DO UPDATE SET unit_value_minor = excluded.unit_value_minor, currency = excluded.currency
                    """, logger: logger)
                try await audit(connection, ecosystem: ecosystem, by: actor, action: "pallet_type.value", subject: palletType)
            }
        } catch let error as PSQLError where error.sqlState == SQLState.foreignKeyViolation {
            throw StoreError.notFound("pallet type")
        }
    }

    public func palletTypes(ecosystem: UUID) async throws -> [PalletTypeRecord] {
        var result: [PalletTypeRecord] = []
        let rows = try await client.query("""
            SELECT t.id, t.code, t.name, t.length_mm, t.width_mm, t.height_mm, t.exchangeable, t.grai_class, t.active,
                   v.unit_value_minor, v.currency::text, v.valid_from::timestamptz
            FROM pallet_types t
            LEFT JOIN LATERAL (
                SELECT unit_value_minor, currency, valid_from FROM pallet_type_values
                WHERE ecosystem_id = t.ecosystem_id AND pallet_type_id = t.id AND valid_from <= \(Instant.date(ofDay: today))::date
                ORDER BY valid_from DESC LIMIT 1) v ON true
            WHERE t.ecosystem_id = \(ecosystem) ORDER BY t.code
            """, logger: logger)
        for try await row in rows {
            let (id, code, name, length, width, height, exchangeable, grai, active, value, currency, validFrom) =
                try row.decode((UUID, String, String, Int?, Int?, Int?, Bool, String?, Bool, Int64?, String?, Date?).self)
            result.append(PalletTypeRecord(id: id, code: code, name: name, lengthMillimetres: length, widthMillimetres: width,
                                           heightMillimetres: height, exchangeable: exchangeable, graiClass: grai,
                                           active: active, unitValueMinor: value, currency: currency,
                                           valueValidFrom: validFrom))
        }
        return result
    }

    /// The snapshot declarations are checked against.
    public func directory(ecosystem: UUID) async throws -> Directory {
        let members = try await members(ecosystem: ecosystem).map {
            Member(id: $0.id, organisation: $0.organisation, name: $0.name, role: $0.role, active: $0.active, pgln: $0.pgln)
        }
        let sites = try await sites(ecosystem: ecosystem).map { Site(id: $0.id, owner: $0.member, name: $0.name, active: $0.active, sgln: $0.sgln) }
        let types = try await palletTypes(ecosystem: ecosystem).map {
            PalletType(id: $0.id, code: $0.code, name: $0.name, exchangeable: $0.exchangeable, active: $0.active,
                       graiClass: $0.graiClass)
        }
        return Directory(ecosystem: ecosystem, members: members, sites: sites, palletTypes: types)
    }

    // MARK: Tokens

    /// The most live tokens a member holds unless said otherwise (`maximumLive`).
    public static let defaultMaximumLiveTokens = 20

    /// A new token for an active member, refused while it already holds `maximumLive` live
    /// ones: a leaked shipper token cannot mint tokens without bound.
    public func issueToken(ecosystem: UUID, member: UUID, name: String, by actor: UUID?,
                           maximumLive: Int = Store.defaultMaximumLiveTokens) async throws -> (TokenRecord, TokenSecret) {
        let secret = TokenSecret.generate()
        let id = newID()
        do {
            let created = try await transaction { connection in
                // The member's row serialises its issues: two at once cannot both pass the count.
                var live: Int64?
                for try await count in try await connection.query("""
                    SELECT (SELECT count(*) FROM api_tokens t
                            WHERE t.ecosystem_id = m.ecosystem_id AND t.membership_id = m.id AND t.revoked_at IS NULL)::int8
                    FROM memberships m WHERE m.ecosystem_id = \(ecosystem) AND m.id = \(member) AND m.active
                    FOR NO KEY UPDATE OF m
                    """, logger: logger).decode(Int64.self) { live = count }
                guard let live else { throw StoreError.notFound("member") }
                guard live < maximumLive else {
                    throw StoreError.conflict("this member already holds \(live) live tokens, the most allowed (\(maximumLive)); revoke one it no longer uses first")
                }
                let rows = try await connection.query("""
                    INSERT INTO api_tokens (ecosystem_id, id, membership_id, name, token_hash, created_at)
                    SELECT \(ecosystem), \(id), m.id, \(name), \(ByteBuffer(bytes: secret.hash)), \(nowDate)
                    FROM memberships m WHERE m.ecosystem_id = \(ecosystem) AND m.id = \(member) AND m.active
                    RETURNING created_at
                    """, logger: logger)
                var created: Date?
                for try await (at) in rows.decode(Date.self) { created = at }
                guard let created else { throw StoreError.notFound("member") }
                try await audit(connection, ecosystem: ecosystem, by: actor, action: "token.issue", subject: id)
                return created
            }
            return (TokenRecord(id: id, member: member, name: name, createdAt: created, revokedAt: nil), secret)
        }
    }

    public func tokens(ecosystem: UUID, member: UUID) async throws -> [TokenRecord] {
        var result: [TokenRecord] = []
        for try await (id, member, name, created, revoked) in try await client.query("""
            SELECT id, membership_id, name, created_at, revoked_at FROM api_tokens
            WHERE ecosystem_id = \(ecosystem) AND membership_id = \(member) ORDER BY created_at
            """, logger: logger).decode((UUID, UUID, String, Date, Date?).self) {
            result.append(TokenRecord(id: id, member: member, name: name, createdAt: created, revokedAt: revoked))
        }
        return result
    }

    public func revokeToken(ecosystem: UUID, member: UUID, token: UUID, by actor: UUID) async throws {
        try await transaction { connection in
            let rows = try await connection.query("""
                UPDATE api_tokens SET revoked_at = coalesce(revoked_at, \(nowDate))
                WHERE ecosystem_id = \(ecosystem) AND membership_id = \(member) AND id = \(token) RETURNING id
                """, logger: logger)
            var found = false
            for try await _ in rows { found = true }
            guard found else { throw StoreError.notFound("token") }
            try await audit(connection, ecosystem: ecosystem, by: actor, action: "token.revoke", subject: token)
        }
        tokenCache.invalidate { $0.token == token }
    }

    /// The caller behind a token secret, if the token is live and its membership active.
    /// Served from `tokenCache` when the token was looked up less than its lifetime ago.
    public func authenticate(_ secret: TokenSecret) async throws -> Caller? {
        guard secret.isWellFormed else { return nil }
        let hash = secret.hash
        let (cached, generation) = tokenCache.get(hash)
        if let cached { return cached }
        for (ecosystem, membership, organisation, name, role, token) in try await client.execute(
            AuthenticateStatement(hash: hash), logger: logger) {
            guard let role = Role(rawValue: role) else { return nil }
            let caller = Caller(ecosystem: ecosystem, membership: membership, organisation: organisation,
                                organisationName: name, role: role, token: token)
            tokenCache.put(hash, caller, lookedUpAt: generation)
            return caller
        }
        return nil
    }

    // MARK: Audit

    func audit(_ connection: PostgresConnection, ecosystem: UUID, by actor: UUID?, action: String, subject: UUID?,
               detail: String? = nil) async throws {
        try await connection.query("""
            INSERT INTO audit_log (ecosystem_id, membership_id, action, subject_id, detail, at)
            VALUES (\(ecosystem), \(actor), \(action), \(subject), \(detail)::jsonb, \(nowDate))
            """, logger: logger)
    }

    /// Database reachable and every migration of this binary applied.
    public func isReady() async -> Bool {
        (try? await Migrator().isUpToDate(client, logger: logger)) ?? false
    }
}

extension Store {
    /// Revokes every live token of the ecosystem carrying this name (the demo re-issues its own).
    public func revokeTokens(ecosystem: UUID, named name: String) async throws {
        try await client.query("""
            UPDATE api_tokens SET revoked_at = \(nowDate)
            WHERE ecosystem_id = \(ecosystem) AND name = \(name) AND revoked_at IS NULL
            """, logger: logger)
        tokenCache.invalidate { $0.ecosystem == ecosystem }
    }
}

extension Store {
    /// Connections to this database by state, as PostgreSQL sees them (for /metrics).
    public func connectionStates() async throws -> [String: Int64] {
        var states: [String: Int64] = [:]
        for try await (state, count) in try await client.query("""
            SELECT coalesce(state, 'unknown'), count(*)::int8 FROM pg_stat_activity
            WHERE datname = current_database() AND backend_type = 'client backend' GROUP BY 1
            """, logger: logger).decode((String, Int64).self) {
            states[state] = count
        }
        return states
    }

    public func setPalletTypeActive(ecosystem: UUID, id: UUID, active: Bool, by actor: UUID) async throws {
        try await transaction { connection in
            let rows = try await connection.query("""
                UPDATE pallet_types SET active = \(active) WHERE ecosystem_id = \(ecosystem) AND id = \(id) RETURNING id
                """, logger: logger)
            var found = false
            for try await _ in rows { found = true }
            guard found else { throw StoreError.notFound("pallet type") }
            try await audit(connection, ecosystem: ecosystem, by: actor, action: active ? "pallet_type.activate" : "pallet_type.deactivate",
                            subject: id)
        }
    }
}

extension Store {
    /// Replaces a token with a new one: the old one stops working now, the new secret is
    /// shown once. Same member, same name.
    public func rotateToken(ecosystem: UUID, token: UUID, by actor: UUID?) async throws -> (TokenRecord, TokenSecret) {
        let secret = TokenSecret.generate()
        let id = newID()
        let rotated = try await transaction { connection in
            var found: (UUID, String)?
            for try await row in try await connection.query("""
                UPDATE api_tokens SET revoked_at = \(nowDate)
                WHERE ecosystem_id = \(ecosystem) AND id = \(token) AND revoked_at IS NULL
                RETURNING membership_id, name
                """, logger: logger).decode((UUID, String).self) { found = row }
            guard let (member, name) = found else { throw StoreError.notFound("live token") }
            var created = nowDate
            for try await at in try await connection.query("""
                INSERT INTO api_tokens (ecosystem_id, id, membership_id, name, token_hash, created_at)
                VALUES (\(ecosystem), \(id), \(member), \(name), \(ByteBuffer(bytes: secret.hash)), \(nowDate))
                RETURNING created_at
                """, logger: logger).decode(Date.self) { created = at }
            try await audit(connection, ecosystem: ecosystem, by: actor, action: "token.rotate", subject: id)
            return (TokenRecord(id: id, member: member, name: name, createdAt: created, revokedAt: nil), secret)
        }
        tokenCache.invalidate { $0.token == token }
        return rotated
    }

    /// Deletes idempotency keys and finished jobs older than the given ages. Keys are kept
    /// at least 7 days whatever is asked: a client may still retry within that window.
    public func vacuum(idempotencyKeysOlderThanDays keyDays: Int, jobsOlderThanDays jobDays: Int) async throws
        -> (idempotencyKeys: Int64, jobs: Int64)
    {
        let keepKeys = max(7, keyDays)
        var keys: Int64 = 0
        var jobs: Int64 = 0
        for try await count in try await client.query("""
            WITH gone AS (DELETE FROM idempotency_keys WHERE created_at < \(nowDate) - \(keepKeys) * interval '1 day' RETURNING 1)
            SELECT count(*)::int8 FROM gone
            """, logger: logger).decode(Int64.self) { keys = count }
        for try await count in try await client.query("""
            WITH gone AS (DELETE FROM jobs WHERE state = 'done' AND finished_at < \(nowDate) - \(max(1, jobDays)) * interval '1 day' RETURNING 1)
            SELECT count(*)::int8 FROM gone
            """, logger: logger).decode(Int64.self) { jobs = count }
        return (keys, jobs)
    }
}

/// `Store.authenticate`'s lookup, prepared once per connection.
struct AuthenticateStatement: PostgresPreparedStatement {
    static let name = "palletflow_authenticate_v2"
    static let sql = """
        SELECT t.ecosystem_id, t.membership_id, m.organisation_id, m.name, m.role::text, t.id
        FROM api_tokens t
        JOIN memberships m ON m.ecosystem_id = t.ecosystem_id AND m.id = t.membership_id
        WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND m.active
        """
    typealias Row = (UUID, UUID, UUID, String, String, UUID)

    let hash: [UInt8]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(ByteBuffer(bytes: hash))
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
