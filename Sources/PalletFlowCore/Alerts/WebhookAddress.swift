import Foundation

/// An IP address as its bytes in network order: 4 for IPv4, 16 for IPv6.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Canonical text only: IPv4 as four decimal numbers 0-255 without leading zeros
    /// (`127.0.0.1`, not `0177.0.0.1`, `127.1`, `0x7f.1` or `2130706433`, the notations
    /// some resolvers read as the same address); IPv6 in RFC 4291 text, brackets and zone
    /// excluded. Anything else is nil.
    public init?(_ text: String) {
        if let v4 = Self.parseIPv4(Substring(text)) {
            bytes = v4
        } else if let v6 = Self.parseIPv6(text) {
            bytes = v6
        } else {
            return nil
        }
    }

    public var isIPv4: Bool { bytes.count == 4 }

    /// Dotted quad, or RFC 5952 IPv6 (lowercase hex, the longest run of zero groups as `::`).
    public var description: String {
        if isIPv4 { return bytes.map(String.init).joined(separator: ".") }
        let groups = (0..<8).map { Int(bytes[2 * $0]) << 8 | Int(bytes[2 * $0 + 1]) }
        var best = (start: -1, length: 0)
        var index = 0
        while index < 8 {
            var end = index
            while end < 8, groups[end] == 0 { end += 1 }
            if end - index > best.length { best = (index, end - index) }
            index = max(end, index + 1)
        }
        let hex = groups.map { String($0, radix: 16) }
        guard best.length >= 2 else { return hex.joined(separator: ":") }
        let head = hex[..<best.start].joined(separator: ":")
        let tail = hex[(best.start + best.length)...].joined(separator: ":")
        return head + "::" + tail
    }

    static func parseIPv4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var result: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  part == "0" || part.first != "0", let value = UInt8(part)
            else { return nil }
            result.append(value)
        }
        return result
    }

    static func parseIPv6(_ text: String) -> [UInt8]? {
        guard text.contains(":"), !text.contains(":::") else { return nil }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        // An IPv4 tail (::ffff:127.0.0.1) stands for the last two groups, at the very end only.
        func groups(_ part: String, last: Bool) -> [UInt16]? {
            guard !part.isEmpty else { return [] }
            var result: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if last, index == pieces.count - 1, piece.contains("."), let v4 = parseIPv4(piece) {
                    result += [UInt16(v4[0]) << 8 | UInt16(v4[1]), UInt16(v4[2]) << 8 | UInt16(v4[3])]
                    continue
                }
                guard (1...4).contains(piece.count), piece.allSatisfy(\.isHexDigit), piece.allSatisfy(\.isASCII),
                      let value = UInt16(piece, radix: 16)
                else { return nil }
                result.append(value)
            }
            return result
        }
        guard let head = groups(halves[0], last: halves.count == 1) else { return nil }
        var all = head
        if halves.count == 2 {
            guard let tail = groups(halves[1], last: true), head.count + tail.count <= 7 else { return nil }
            all += [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard all.count == 8 else { return nil }
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
    }
}

/// Where an address points, as far as webhooks care.
public enum AddressRange: String, Sendable, CaseIterable {
    case loopback
    case privateUse = "private"
    case linkLocal = "link-local"
    /// 100.64.0.0/10, carrier-grade NAT: inside the operator's network.
    case sharedAddressSpace = "shared (100.64.0.0/10)"
    case multicast
    case broadcast
    case unspecified
    /// 0.0.0.0/8 other than 0.0.0.0: "this network", which Linux routes locally.
    case thisNetwork = "this-network (0.0.0.0/8)"
    case global = "public"
}

extension IPAddress {
    public var range: AddressRange {
        if isIPv4 { return Self.range(ofIPv4: bytes) }
        let b = bytes
        if b.allSatisfy({ $0 == 0 }) { return .unspecified }
        if b[0..<15].allSatisfy({ $0 == 0 }), b[15] == 1 { return .loopback }
        // IPv4 carried in IPv6: mapped (::ffff:a.b.c.d), the deprecated compatible form
        // (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) reach the IPv4 address they carry.
        let mapped = b[0..<10].allSatisfy { $0 == 0 } && b[10] == 0xff && b[11] == 0xff
        let compatible = b[0..<12].allSatisfy { $0 == 0 }
        let nat64 = b[0..<4] == [0x00, 0x64, 0xff, 0x9b] && b[4..<12].allSatisfy { $0 == 0 }
        if mapped || compatible || nat64 { return Self.range(ofIPv4: Array(b[12..<16])) }
        if b[0] & 0xfe == 0xfc { return .privateUse }                  // fc00::/7, unique local
        if b[0] == 0xfe, b[1] & 0xc0 == 0xc0 { return .privateUse }    // fec0::/10, old site-local
        if b[0] == 0xfe, b[1] & 0xc0 == 0x80 { return .linkLocal }     // fe80::/10
        if b[0] == 0xff { return .multicast }                          // ff00::/8
        return .global
    }

    static func range(ofIPv4 b: [UInt8]) -> AddressRange {
        switch (b[0], b[1]) {
        case (0, _): return b.allSatisfy { $0 == 0 } ? .unspecified : .thisNetwork
        case (127, _): return .loopback
        case (10, _), (172, 16...31), (192, 168): return .privateUse
        case (169, 254): return .linkLocal
        case (100, 64...127): return .sharedAddressSpace
        case (224...239, _): return .multicast
        case (255, 255) where b[2] == 255 && b[3] == 255: return .broadcast
        default: return .global
        }
    }
}

/// Which addresses a webhook may reach. Public addresses always; loopback, private,
/// link-local and shared (CGNAT) ones only when the deployment allows it (a private
/// installation whose receivers sit on its own network); multicast, broadcast, the
/// unspecified address and 0.0.0.0/8 never (0.0.0.0 reaches the machine itself on Linux).
public struct WebhookAddressRule: Sendable, Hashable {
    public var allowPrivateAddresses: Bool

    public init(allowPrivateAddresses: Bool = false) {
        self.allowPrivateAddresses = allowPrivateAddresses
    }

    /// The range that makes `address` refused, or nil when it may be reached.
    public func refusal(_ address: IPAddress) -> AddressRange? {
        switch address.range {
        case .global: nil
        case .loopback, .privateUse, .linkLocal, .sharedAddressSpace: allowPrivateAddresses ? nil : address.range
        case .multicast, .broadcast, .unspecified, .thisNetwork: address.range
        }
    }
}

/// A webhook URL read strictly: http or https, a host that is a plain DNS name or a
/// canonical IP address, an optional port, no user information. Its host is what the
/// sender resolves and checks, and the request URL is rebuilt from these parts, so no
/// other URL parser gets a chance to read a different host out of the same text.
public struct WebhookURL: Hashable, Sendable {
    public enum Host: Hashable, Sendable {
        /// Lowercased.
        case name(String)
        case address(IPAddress)
    }

    /// The text as registered.
    public let text: String
    public let scheme: String
    public let host: Host
    public let port: Int?
    /// Path and query, starting with "/"; the fragment is dropped (it is never sent).
    public let target: String

    public var effectivePort: Int { port ?? (scheme == "https" ? 443 : 80) }

    /// The host as written in a URL: a name, a dotted quad or a bracketed IPv6 address.
    public var hostText: String {
        switch host {
        case .name(let name): name
        case .address(let address): address.isIPv4 ? address.description : "[\(address)]"
        }
    }

    /// The URL the request goes to, rebuilt from the checked parts.
    public var requestURL: String {
        "\(scheme)://\(hostText)\(port.map { ":\($0)" } ?? "")\(target)"
    }

    public struct Invalid: Error, Sendable, Hashable, CustomStringConvertible {
        public var description: String
    }

    public init(parsing text: String) throws(Invalid) {
        func invalid(_ why: String) -> Invalid { Invalid(description: why) }
        guard text.utf8.count <= 2_000 else { throw invalid("must be at most 2000 characters") }
        // Printable ASCII only: no spaces, control characters or Unicode look-alikes.
        guard text.unicodeScalars.allSatisfy({ (0x21...0x7e).contains($0.value) }) else {
            throw invalid("must be an absolute http(s) URL in printable ASCII (percent-encode the rest)")
        }
        guard let separator = text.range(of: "://") else { throw invalid("must be an absolute http(s) URL") }
        let scheme = text[..<separator.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { throw invalid("must use http or https") }
        let rest = text[separator.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard !authority.contains("@") else { throw invalid("must not carry a user name or password") }
        let (host, port) = try Self.split(authority)
        var target = String(rest[authorityEnd...])
        if let hash = target.firstIndex(of: "#") { target = String(target[..<hash]) }
        guard !target.contains("\\") else { throw invalid("must not contain a backslash") }
        if target.isEmpty || target.first == "?" { target = "/" + target }
        self.text = text
        self.scheme = scheme
        self.host = host
        self.port = port
        self.target = target
        // Foundation's reading of the rebuilt URL (the one the HTTP client makes) must see
        // the same host; if it does not, refuse rather than guess which one is right.
        guard let url = URL(string: requestURL), url.host?.lowercased() == Self.bare(hostText) else {
            throw invalid("must be an absolute http(s) URL")
        }
    }

    private static func bare(_ host: String) -> String {
        host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
    }

    private static func split(_ authority: Substring) throws(Invalid) -> (Host, Int?) {
        let hostPart: Substring
        var portPart: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]"),
                  let address = IPAddress(String(authority[authority.index(after: authority.startIndex)..<close])),
                  !address.isIPv4
            else { throw Invalid(description: "must name its host by a plain host name or a canonical IP address") }
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { throw Invalid(description: "must be an absolute http(s) URL") }
                portPart = after.dropFirst()
            }
            return (.address(address), try port(portPart))
        }
        if let colon = authority.firstIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        } else {
            hostPart = authority
        }
        guard !hostPart.isEmpty else { throw Invalid(description: "must name a host") }
        if let address = IPAddress.parseIPv4(hostPart).flatMap(IPAddress.init(bytes:)) {
            return (.address(address), try port(portPart))
        }
        guard isPlainHostName(hostPart) else {
            throw Invalid(description: "must name its host by a plain host name or a canonical IP address")
        }
        return (.name(hostPart.lowercased()), try port(portPart))
    }

    private static func port(_ text: Substring?) throws(Invalid) -> Int? {
        guard let text else { return nil }
        guard (1...5).contains(text.count), text.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(text),
              (1...65_535).contains(value)
        else { throw Invalid(description: "must have a port between 1 and 65535") }
        return value
    }

    /// Letters, digits and inner hyphens in labels of 1 to 63 characters, at most 253 in
    /// all, and a last label that is not a number: resolvers read `2130706433`, `0x7f.1`
    /// or `127.1` as IPv4 addresses, so those are refused rather than resolved.
    static func isPlainHostName(_ host: Substring) -> Bool {
        guard host.count <= 253 else { return false }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.count), label.first != "-", label.last != "-",
                  label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") })
            else { return false }
        }
        guard let last = labels.last?.lowercased() else { return false }
        let numeric = last.allSatisfy(\.isNumber)
            || (last.hasPrefix("0x") && last.dropFirst(2).allSatisfy(\.isHexDigit))
        return !numeric
    }
}

/// What became of one delivery attempt, as it is kept: the remote's own words (its body,
/// an error text) are never stored, only the status or one of two fixed words.
public enum WebhookOutcome: Sendable, Hashable {
    /// The receiver answered with this HTTP status.
    case answered(status: Int)
    /// Not sent: the address is refused by the rule, or the connection was refused or failed.
    case refused
    /// No answer in time.
    case timeout

    public var delivered: Bool {
        if case .answered(let status) = self { return (200..<300).contains(status) }
        return false
    }

    public var status: Int? {
        if case .answered(let status) = self { return status }
        return nil
    }

    /// nil when delivered; otherwise "refused", "timeout" or "HTTP <status>".
    public var error: String? {
        switch self {
        case .answered(let status): delivered ? nil : "HTTP \(status)"
        case .refused: "refused"
        case .timeout: "timeout"
        }
    }
}

extension WebhookAddressRule {
    public static let environmentVariable = "PALLETFLOW_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES"

    /// The programs' setting: the flag, or the environment variable set to `true`, `1` or
    /// `yes` (any case). Any other value, or none, keeps private addresses refused.
    public static func configured(flag: Bool, environment: [String: String] = ProcessInfo.processInfo.environment)
        -> WebhookAddressRule
    {
        let variable = environment[environmentVariable]?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        return WebhookAddressRule(allowPrivateAddresses: flag || ["true", "1", "yes"].contains(variable))
    }
}
