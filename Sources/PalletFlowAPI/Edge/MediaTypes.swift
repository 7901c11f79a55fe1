import HTTPTypes

/// `Accept` and `Content-Type` read by the contract's rules, for the routes that answer
/// before or without the generated layer (a write's Accept check, the declarations' route).
/// Parameters (`;q=`, `;charset=`) are ignored, as the generated layer ignores them.
enum MediaTypes {
    /// The media types an `Accept` header lists, lowercased, without parameters.
    static func accepted(_ header: String) -> [String] {
        header.split(separator: ",").map { mediaType(String($0)) }.filter { !$0.isEmpty }
    }

    /// Whether `header` (absent: anything) admits `type/subtype`, itself or by a wildcard.
    static func accepts(_ header: String?, _ wanted: String) -> Bool {
        guard let header, !header.trimmingCharacters(in: .whitespaces).isEmpty else { return true }
        let type = wanted.split(separator: "/").first.map(String.init) ?? wanted
        return accepted(header).contains { $0 == "*/*" || $0 == type + "/*" || $0 == wanted }
    }

    /// 406 unless the request's `Accept` admits `wanted`.
    static func requireAccepts(_ headers: HTTPFields, _ wanted: String) throws {
        let header = headers[.accept]
        guard accepts(header, wanted) else {
            throw Problem(.notAcceptable, "not-acceptable", "Not acceptable",
                          detail: "This operation answers \(wanted); the Accept header asks for \(header ?? ""). "
                              + "Accept the media type the API describes at /openapi.yaml, or send no Accept header.")
        }
    }

    /// 415 unless the body is `wanted` (a request without Content-Type is read as `wanted`).
    static func requireContentType(_ headers: HTTPFields, _ wanted: String) throws {
        guard let header = headers[.contentType], mediaType(header) != wanted else { return }
        throw Problem(.unsupportedMediaType, "unsupported-media-type", "Unsupported media type",
                      detail: "This operation reads \(wanted), the body is \(header). "
                          + "Send the body with the Content-Type the API describes at /openapi.yaml.")
    }

    private static func mediaType(_ value: String) -> String {
        (value.split(separator: ";", maxSplits: 1).first.map(String.init) ?? "")
            .trimmingCharacters(in: .whitespaces).lowercased()
    }
}
