/// GS1 identifiers in one canonical form, whatever the notation they arrive in: the EPC
/// URN (`urn:epc:id:pgln:4012345.00000`), the GS1 Digital Link
/// (`https://id.gs1.org/417/4012345000009`, any resolver host) or the bare digits
/// PalletFlow stores. Two notations of the same key give the same `GS1Key`.
public struct GS1Key: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// A returnable asset class (GRAI without serial, AI 8003): a pallet type.
        case graiClass = "grai"
        /// A party (PGLN, AI 417).
        case party = "pgln"
        /// A location (SGLN, AI 414 with optional extension AI 254).
        case location = "sgln"
        /// A document (GDTI, AI 253), such as a pallet note.
        case document = "gdti"
    }

    public var kind: Kind
    /// The element string: 14 digits for a GRAI class, 13 for a GLN (plus `/254/ext`
    /// for a location with an extension), 13 digits and the serial for a GDTI.
    public var value: String

    public init(kind: Kind, value: String) {
        self.kind = kind
        self.value = value
    }

    /// `grai:04000001111114`: what the database stores and queries compare.
    public var description: String { "\(kind.rawValue):\(value)" }

    /// The EPC URN form, as PalletFlow writes identifiers back out.
    public func urn(companyPrefixLength: Int = 7) -> String {
        switch kind {
        case .graiClass:
            let digits = String(value.dropFirst().prefix(12))
            return "urn:epc:idpat:grai:\(digits.prefix(companyPrefixLength)).\(digits.dropFirst(companyPrefixLength)).*"
        case .party:
            let digits = value.prefix(12)
            return "urn:epc:id:pgln:\(digits.prefix(companyPrefixLength)).\(digits.dropFirst(companyPrefixLength))"
        case .location:
            let parts = value.split(separator: "/", omittingEmptySubsequences: false)
            let digits = parts[0].prefix(12)
            let ext = parts.count == 3 ? String(parts[2]) : "0"
            return "urn:epc:id:sgln:\(digits.prefix(companyPrefixLength)).\(digits.dropFirst(companyPrefixLength)).\(ext)"
        case .document:
            let digits = value.prefix(12)
            let serial = value.dropFirst(13)
            return "urn:epc:id:gdti:\(digits.prefix(companyPrefixLength)).\(digits.dropFirst(companyPrefixLength)).\(serial)"
        }
    }

    /// The GS1 mod-10 check digit of `digits` (the key without its check digit).
    public static func checkDigit(_ digits: some StringProtocol) -> Character {
        var sum = 0
        for (position, character) in digits.reversed().enumerated() {
            let digit = Int(character.asciiValue! - 48)
            sum += position % 2 == 0 ? digit * 3 : digit
        }
        return Character(String((10 - sum % 10) % 10))
    }

    static func allDigits(_ text: some StringProtocol) -> Bool {
        !text.isEmpty && text.allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// Digits ending in a valid check digit.
    static func checked(_ digits: some StringProtocol) -> Bool {
        allDigits(digits) && digits.last == checkDigit(digits.dropLast())
    }

    /// A GRAI class from its pattern URN, a serialised GRAI URN (its class), a Digital
    /// Link with AI 8003 (with or without serial), or 14 bare digits.
    public static func graiClass(_ text: String) -> GS1Key? {
        if let body = text.dropPrefix("urn:epc:idpat:grai:") ?? text.dropPrefix("urn:epc:id:grai:") {
            let parts = body.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 3, allDigits(parts[0]), allDigits(parts[1]) || parts[1].isEmpty,
                  parts[0].count + parts[1].count == 12, (6...12).contains(parts[0].count),
                  !parts[2].isEmpty
            else { return nil }
            let digits = "0" + parts[0] + parts[1]
            return GS1Key(kind: .graiClass, value: digits + String(checkDigit(digits)))
        }
        if let path = digitalLinkPath(text), path.count >= 2, path[0] == "8003" {
            let element = path[1]
            guard element.count >= 14 else { return nil }
            let digits = element.prefix(14)
            guard checked(digits) else { return nil }
            return GS1Key(kind: .graiClass, value: String(digits))
        }
        if text.count == 14, checked(text) { return GS1Key(kind: .graiClass, value: text) }
        return nil
    }

    /// A serialised GRAI (one pallet) gives its class; a class pattern is not one pallet.
    public static func isSerialisedGRAI(_ text: String) -> Bool {
        if text.hasPrefix("urn:epc:id:grai:") { return graiClass(text) != nil }
        if let path = digitalLinkPath(text), path.count >= 2, path[0] == "8003" { return path[1].count > 14 }
        return false
    }

    public static func party(_ text: String) -> GS1Key? {
        if let body = text.dropPrefix("urn:epc:id:pgln:") {
            let parts = body.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 2, allDigits(parts[0]), allDigits(parts[1]) || parts[1].isEmpty,
                  parts[0].count + parts[1].count == 12
            else { return nil }
            let digits = parts[0] + parts[1]
            return GS1Key(kind: .party, value: digits + String(checkDigit(digits)))
        }
        if let path = digitalLinkPath(text), path.count == 2, path[0] == "417" {
            return checked(path[1]) && path[1].count == 13 ? GS1Key(kind: .party, value: path[1]) : nil
        }
        if text.count == 13, checked(text) { return GS1Key(kind: .party, value: text) }
        return nil
    }

    public static func location(_ text: String) -> GS1Key? {
        if let body = text.dropPrefix("urn:epc:id:sgln:") {
            let parts = body.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 3, allDigits(parts[0]), allDigits(parts[1]) || parts[1].isEmpty,
                  parts[0].count + parts[1].count == 12, !parts[2].isEmpty
            else { return nil }
            let digits = parts[0] + parts[1]
            let gln = digits + String(checkDigit(digits))
            return GS1Key(kind: .location, value: parts[2] == "0" ? String(gln) : gln + "/254/" + parts[2])
        }
        if let path = digitalLinkPath(text), path.count >= 2, path[0] == "414" {
            guard path[1].count == 13, checked(path[1]) else { return nil }
            if path.count == 2 { return GS1Key(kind: .location, value: path[1]) }
            if path.count == 4, path[2] == "254", !path[3].isEmpty {
                return GS1Key(kind: .location, value: path[3] == "0" ? path[1] : path[1] + "/254/" + path[3])
            }
            return nil
        }
        if text.count == 13, checked(text) { return GS1Key(kind: .location, value: text) }
        return nil
    }

    public static func document(_ text: String) -> GS1Key? {
        if let body = text.dropPrefix("urn:epc:id:gdti:") {
            let parts = body.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 3, allDigits(parts[0]), allDigits(parts[1]) || parts[1].isEmpty,
                  parts[0].count + parts[1].count == 12
            else { return nil }
            let digits = parts[0] + parts[1]
            return GS1Key(kind: .document, value: digits + String(checkDigit(digits)) + parts[2])
        }
        if let path = digitalLinkPath(text), path.count == 2, path[0] == "253" {
            let element = path[1]
            guard element.count >= 13, checked(element.prefix(13)) else { return nil }
            return GS1Key(kind: .document, value: element)
        }
        return nil
    }

    /// The path segments after the host of an http(s) URI, percent-decoded; nil for
    /// anything else. Digital Link keys are resolver-independent, so any host will do.
    static func digitalLinkPath(_ text: String) -> [String]? {
        guard let rest = text.dropPrefix("https://") ?? text.dropPrefix("http://") else { return nil }
        let withoutQuery = rest.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        var segments = withoutQuery.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map {
            String($0).removingPercentEncoding ?? String($0)
        }
        if segments.last == "" { segments.removeLast() }
        // A resolver may sit under a path prefix: start at the first known AI.
        guard let start = segments.firstIndex(where: { ["8003", "417", "414", "253"].contains($0) }) else { return nil }
        return Array(segments[start...])
    }
}

extension String {
    func dropPrefix(_ prefix: String) -> Substring? {
        hasPrefix(prefix) ? dropFirst(prefix.count) : nil
    }
}
