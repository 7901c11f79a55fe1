import Crypto
import Foundation

/// An API token's secret: 256 random bits, shown once, stored only as its SHA-256.
public struct TokenSecret: Sendable, Hashable {
    public static let prefix = "pft_"
    public let text: String

    public init(text: String) { self.text = text }

    public static func generate() -> TokenSecret {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let encoded = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return TokenSecret(text: prefix + encoded)
    }

    /// What the database keeps. A lookup by this digest compares no secret byte by byte,
    /// so response time tells nothing about how close a guess was.
    public var hash: [UInt8] { Array(SHA256.hash(data: Data(text.utf8))) }

    /// Cheap shape check before touching the database.
    public var isWellFormed: Bool {
        text.hasPrefix(Self.prefix) && text.utf8.count == Self.prefix.utf8.count + 43
            && text.utf8.dropFirst(Self.prefix.utf8.count).allSatisfy {
                ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 95
            }
    }
}
