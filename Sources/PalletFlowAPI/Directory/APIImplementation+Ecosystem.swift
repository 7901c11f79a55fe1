import PalletFlowContract
import Foundation
import PalletFlowCore
import PalletFlowStore

extension APIImplementation {
    func getMe(_ input: Operations.GetMe.Input) async throws -> Operations.GetMe.Output {
        let caller = try caller()
        return .ok(.init(body: .json(.init(
            ecosystemId: caller.ecosystem.lowercase, memberId: caller.membership.lowercase,
            organisationId: caller.organisation.lowercase, organisationName: caller.organisationName,
            role: .init(caller.role), tokenId: caller.token.lowercase))))
    }

    func getEcosystem(_ input: Operations.GetEcosystem.Input) async throws -> Operations.GetEcosystem.Output {
        let caller = try caller(in: input.path.ecosystemId)
        guard let ecosystem = try await store.ecosystem(caller.ecosystem) else { throw Problem.notFound("ecosystem") }
        return .ok(.init(body: .json(.init(
            id: ecosystem.id.lowercase, name: ecosystem.name, currency: ecosystem.currency,
            lossHorizonDays: ecosystem.lossHorizonDays, noteDueDays: ecosystem.noteDueDays,
            createdAt: ecosystem.createdAt))))
    }

    /// Members the caller may see: carriers do not see other carriers.
    func visibleMembers(_ caller: Caller) async throws -> [MemberRecord] {
        try await store.members(ecosystem: caller.ecosystem).filter {
            caller.role.mayListInDirectory($0.role, isSelf: $0.id == caller.membership)
        }
    }

    func listMembers(_ input: Operations.ListMembers.Input) async throws -> Operations.ListMembers.Output {
        let caller = try caller(in: input.path.ecosystemId)
        return .ok(.init(body: .json(.init(items: try await visibleMembers(caller).map(Components.Schemas.Member.init)))))
    }

    func getMember(_ input: Operations.GetMember.Input) async throws -> Operations.GetMember.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let id = try uuid(input.path.memberId, "member")
        guard let member = try await visibleMembers(caller).first(where: { $0.id == id }) else {
            throw Problem.notFound("member")
        }
        return .ok(.init(body: .json(.init(member))))
    }

    func addMember(_ input: Operations.AddMember.Input) async throws -> Operations.AddMember.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireShipper(caller, "add members")
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        var check = Validator()
        let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
        check.check(!name.isEmpty && name.unicodeScalars.count <= 200, "name", "must be 1 to 200 characters")
        if let pgln = body.pgln {
            check.check(pgln.count == 13 && pgln.allSatisfy(\.isASCII) && pgln.allSatisfy(\.isNumber), "pgln",
                        "must be a 13-digit GS1 party GLN")
        }
        check.check(body.role != .shipper, "role", "an ecosystem has one shipper, created with the ecosystem")
        try check.throwIfInvalid()
        let member = try await store.addMember(ecosystem: caller.ecosystem, name: name, pgln: body.pgln,
                                               role: Role(body.role), by: caller.membership)
        directoryCache.invalidate(caller.ecosystem)
        return .created(.init(body: .json(.init(member))))
    }

    func updateMember(_ input: Operations.UpdateMember.Input) async throws -> Operations.UpdateMember.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let id = try uuid(input.path.memberId, "member")
        guard try await visibleMembers(caller).contains(where: { $0.id == id }) else { throw Problem.notFound("member") }
        try requireShipper(caller, "change members")
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        if id == caller.membership && !body.active {
            throw Problem.validation([FieldError("active", "the shipper cannot deactivate itself")])
        }
        try await store.setMemberActive(ecosystem: caller.ecosystem, id: id, active: body.active, by: caller.membership)
        directoryCache.invalidate(caller.ecosystem)
        guard let member = try await store.member(ecosystem: caller.ecosystem, id: id) else { throw Problem.notFound("member") }
        return .ok(.init(body: .json(.init(member))))
    }

    /// Tokens are managed by the shipper for anyone, and by each member for itself.
    func tokenOwner(_ caller: Caller, _ memberID: String) async throws -> UUID {
        let id = try uuid(memberID, "member")
        guard try await visibleMembers(caller).contains(where: { $0.id == id }) else { throw Problem.notFound("member") }
        guard caller.role.administersEcosystem || id == caller.membership else {
            throw Problem.forbidden("Only the shipper manages other members' tokens.")
        }
        return id
    }

    func listTokens(_ input: Operations.ListTokens.Input) async throws -> Operations.ListTokens.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let member = try await tokenOwner(caller, input.path.memberId)
        let tokens = try await store.tokens(ecosystem: caller.ecosystem, member: member)
        return .ok(.init(body: .json(.init(items: tokens.map(Components.Schemas.Token.init)))))
    }

    func issueToken(_ input: Operations.IssueToken.Input) async throws -> Operations.IssueToken.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let member = try await tokenOwner(caller, input.path.memberId)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, name.unicodeScalars.count <= 100 else {
            throw Problem.validation([FieldError("name", "must be 1 to 100 characters")])
        }
        let (token, secret) = try await store.issueToken(ecosystem: caller.ecosystem, member: member, name: name,
                                                         by: caller.membership, maximumLive: settings.maxTokensPerMember)
        return .created(.init(body: .json(.init(token: .init(token), secret: secret.text))))
    }

    func revokeToken(_ input: Operations.RevokeToken.Input) async throws -> Operations.RevokeToken.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let member = try await tokenOwner(caller, input.path.memberId)
        let token = try uuid(input.path.tokenId, "token")
        try await store.revokeToken(ecosystem: caller.ecosystem, member: member, token: token, by: caller.membership)
        return .noContent(.init())
    }

    /// Sites the caller may see: carriers do not see other carriers' sites.
    func visibleSites(_ caller: Caller) async throws -> [SiteRecord] {
        let members = Dictionary(uniqueKeysWithValues: try await visibleMembers(caller).map { ($0.id, $0) })
        return try await store.sites(ecosystem: caller.ecosystem).filter { members[$0.member] != nil }
    }

    func listSites(_ input: Operations.ListSites.Input) async throws -> Operations.ListSites.Output {
        let caller = try caller(in: input.path.ecosystemId)
        return .ok(.init(body: .json(.init(items: try await visibleSites(caller).map(Components.Schemas.Site.init)))))
    }

    func addSite(_ input: Operations.AddSite.Input) async throws -> Operations.AddSite.Output {
        let caller = try caller(in: input.path.ecosystemId)
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        var check = Validator()
        let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
        check.check(!name.isEmpty && name.unicodeScalars.count <= 200, "name", "must be 1 to 200 characters")
        let member = UUID(parsing: body.memberId)
        var visible: MemberRecord?
        if let member {
            visible = try await visibleMembers(caller).first { $0.id == member }
        }
        if visible == nil {
            check.add("memberId", "is not a member of this ecosystem")
        } else if !caller.role.administersEcosystem && member != caller.membership {
            throw Problem.forbidden("A member adds sites for itself only; the shipper adds them for anyone.")
        }
        if let sgln = body.sgln { check.check(!sgln.isEmpty && sgln.unicodeScalars.count <= 100, "sgln", "must be 1 to 100 characters") }
        if let address = body.address { check.check(address.unicodeScalars.count <= 500, "address", "must be at most 500 characters") }
        try check.throwIfInvalid()
        let site = try await store.addSite(ecosystem: caller.ecosystem, member: member!, name: name, sgln: body.sgln,
                                           address: body.address, by: caller.membership)
        directoryCache.invalidate(caller.ecosystem)
        return .created(.init(body: .json(.init(site))))
    }

    func listPalletTypes(_ input: Operations.ListPalletTypes.Input) async throws -> Operations.ListPalletTypes.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let types = try await store.palletTypes(ecosystem: caller.ecosystem)
        return .ok(.init(body: .json(.init(items: types.map(Components.Schemas.PalletType.init)))))
    }

    func addPalletType(_ input: Operations.AddPalletType.Input) async throws -> Operations.AddPalletType.Output {
        let caller = try caller(in: input.path.ecosystemId)
        try requireShipper(caller, "add pallet types")
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        var check = Validator()
        check.check(body.code.range(of: "^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$", options: .regularExpression) != nil, "code",
                    "must be 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit")
        let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
        check.check(!name.isEmpty && name.unicodeScalars.count <= 200, "name", "must be 1 to 200 characters")
        for (field, value) in [("lengthMm", body.lengthMm), ("widthMm", body.widthMm), ("heightMm", body.heightMm)] {
            if let value { check.check((1...10_000).contains(value), field, "must be between 1 and 10000 millimetres") }
        }
        if let grai = body.graiClass {
            check.check(!grai.isEmpty && grai.unicodeScalars.count <= 100, "graiClass", "must be 1 to 100 characters")
        }
        let value = body.unitValue.map { validate(unitValue: $0, prefix: "unitValue.", check: &check) } ?? nil
        try check.throwIfInvalid()
        let type = try await store.addPalletType(ecosystem: caller.ecosystem, .init(
            code: body.code, name: name, lengthMillimetres: body.lengthMm, widthMillimetres: body.widthMm,
            heightMillimetres: body.heightMm, exchangeable: body.exchangeable ?? true, graiClass: body.graiClass,
            unitValueMinor: value?.amount, currency: value?.currency, valueValidFrom: value?.validFrom), by: caller.membership)
        directoryCache.invalidate(caller.ecosystem)
        return .created(.init(body: .json(.init(type))))
    }

    func addPalletTypeValue(_ input: Operations.AddPalletTypeValue.Input) async throws -> Operations.AddPalletTypeValue.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let typeID = try uuid(input.path.palletTypeId, "pallet type")
        guard try await store.palletTypes(ecosystem: caller.ecosystem).contains(where: { $0.id == typeID }) else {
            throw Problem.notFound("pallet type")
        }
        try requireShipper(caller, "set pallet values")
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        var check = Validator()
        let value = validate(unitValue: body, prefix: "", check: &check)
        try check.throwIfInvalid()
        guard let value else { throw Problem.validation(check.errors) }
        try await store.addPalletTypeValue(ecosystem: caller.ecosystem, palletType: typeID, validFrom: value.validFrom,
                                           unitValueMinor: value.amount, currency: value.currency, by: caller.membership)
        guard let type = try await store.palletTypes(ecosystem: caller.ecosystem).first(where: { $0.id == typeID }) else {
            throw Problem.notFound("pallet type")
        }
        return .ok(.init(body: .json(.init(type))))
    }

    func updatePalletType(_ input: Operations.UpdatePalletType.Input) async throws -> Operations.UpdatePalletType.Output {
        let caller = try caller(in: input.path.ecosystemId)
        let typeID = try uuid(input.path.palletTypeId, "pallet type")
        guard try await store.palletTypes(ecosystem: caller.ecosystem).contains(where: { $0.id == typeID }) else {
            throw Problem.notFound("pallet type")
        }
        try requireShipper(caller, "retire pallet types")
        guard case .json(let body) = input.body else { throw Problem.badRequest("Expected application/json.") }
        try await store.setPalletTypeActive(ecosystem: caller.ecosystem, id: typeID, active: body.active, by: caller.membership)
        directoryCache.invalidate(caller.ecosystem)
        guard let type = try await store.palletTypes(ecosystem: caller.ecosystem).first(where: { $0.id == typeID }) else {
            throw Problem.notFound("pallet type")
        }
        return .ok(.init(body: .json(.init(type))))
    }

    func validate(unitValue: Components.Schemas.UnitValue, prefix: String, check: inout Validator)
        -> (amount: Int64, currency: String, validFrom: Date)?
    {
        let before = check.errors.count
        check.check(unitValue.amountMinor >= 0 && unitValue.amountMinor <= 100_000_000, prefix + "amountMinor",
                    "must be between 0 and 100000000 minor units")
        check.check(unitValue.currency.range(of: "^[A-Z]{3}$", options: .regularExpression) != nil, prefix + "currency",
                    "must be an ISO 4217 code such as EUR")
        let date = Instant.parse(unitValue.validFrom + "T00:00:00Z")
        check.check(date != nil, prefix + "validFrom", "must be a date written YYYY-MM-DD")
        guard check.errors.count == before, let date else { return nil }
        return (unitValue.amountMinor, unitValue.currency, date.date)
    }
}

extension UUID {
    var lowercase: String { uuidString.lowercased() }
}

extension Components.Schemas.Role {
    init(_ role: Role) { self = Self(rawValue: role.rawValue)! }
}

extension Role {
    init(_ role: Components.Schemas.Role) { self = Role(rawValue: role.rawValue)! }
}

extension Components.Schemas.Member {
    init(_ member: MemberRecord) {
        self.init(id: member.id.lowercase, organisationId: member.organisation.lowercase, name: member.name,
                  pgln: member.pgln, role: .init(member.role), active: member.active, createdAt: member.createdAt)
    }
}

extension Components.Schemas.Token {
    init(_ token: TokenRecord) {
        self.init(id: token.id.lowercase, memberId: token.member.lowercase, name: token.name, createdAt: token.createdAt,
                  revokedAt: token.revokedAt)
    }
}

extension Components.Schemas.Site {
    init(_ site: SiteRecord) {
        self.init(id: site.id.lowercase, memberId: site.member.lowercase, name: site.name, sgln: site.sgln,
                  address: site.address, active: site.active)
    }
}

extension Components.Schemas.PalletType {
    init(_ type: PalletTypeRecord) {
        var value: Components.Schemas.UnitValue?
        if let amount = type.unitValueMinor, let currency = type.currency, let from = type.valueValidFrom {
            value = .init(amountMinor: amount, currency: currency, validFrom: String(Instant(from).description.prefix(10)))
        }
        self.init(id: type.id.lowercase, code: type.code, name: type.name, lengthMm: type.lengthMillimetres,
                  widthMm: type.widthMillimetres, heightMm: type.heightMillimetres, exchangeable: type.exchangeable,
                  graiClass: type.graiClass, active: type.active, unitValue: value)
    }
}
