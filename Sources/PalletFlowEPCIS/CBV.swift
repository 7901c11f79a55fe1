/// The Core Business Vocabulary 2.0 words EPCIS fields may use. A value is either a bare
/// CBV word, the same word as a CBV URI, or another URI (a private vocabulary).
public enum CBV {
    public enum Vocabulary: String, Sendable {
        case bizStep = "BizStep"
        case disposition = "Disp"
        case bizTransactionType = "BTT"
        case sourceDestinationType = "SDT"
        case errorReason = "ER"

        /// Legacy URN segment (`urn:epcglobal:cbv:bizstep:arriving`).
        var urnSegment: String {
            switch self {
            case .bizStep: "bizstep"
            case .disposition: "disp"
            case .bizTransactionType: "btt"
            case .sourceDestinationType: "sdt"
            case .errorReason: "er"
            }
        }

        public var words: Set<String> {
            switch self {
            case .bizStep: CBV.bizSteps
            case .disposition: CBV.dispositions
            case .bizTransactionType: CBV.bizTransactionTypes
            case .sourceDestinationType: CBV.sourceDestinationTypes
            case .errorReason: CBV.errorReasons
            }
        }
    }

    public static let bizSteps: Set<String> = [
        "accepting", "arriving", "assembling", "collecting", "commissioning", "consigning", "creating_class_instance",
        "cycle_counting", "decommissioning", "departing", "destroying", "disassembling", "dispensing", "encoding",
        "entering_exiting", "holding", "inspecting", "installing", "killing", "loading", "other", "packing", "picking",
        "receiving", "removing", "repackaging", "repairing", "replacing", "reserving", "retail_selling", "sampling",
        "sensor_reporting", "shipping", "staging_outbound", "stock_taking", "stocking", "storing", "transporting",
        "unloading", "unpacking", "void_shipping",
    ]

    public static let dispositions: Set<String> = [
        "active", "available", "completeness_inferred", "completeness_verified", "conformant", "container_closed",
        "container_open", "damaged", "destroyed", "dispensed", "disposed", "encoded", "expired", "in_progress",
        "in_transit", "inactive", "mismatch_class", "mismatch_instance", "mismatch_quantity", "needs_replacement",
        "no_pedigree_match", "non_conformant", "non_sellable_other", "partially_dispensed", "recalled", "reserved",
        "retail_sold", "returned", "sellable_accessible", "sellable_not_accessible", "stolen", "unavailable", "unknown",
    ]

    public static let bizTransactionTypes: Set<String> = [
        "bol", "cert", "desadv", "inv", "pedigree", "po", "poc", "prodorder", "recadv", "rma", "testprd", "testdest",
    ]

    public static let sourceDestinationTypes: Set<String> = ["owning_party", "possessing_party", "location"]

    public static let errorReasons: Set<String> = ["did_not_occur", "incorrect_data"]

    public enum Term: Sendable, Hashable {
        /// A CBV word, however it was written.
        case word(String)
        /// A URI outside the CBV.
        case uri(String)

        /// The bare word for CBV terms, the URI otherwise: what PalletFlow stores.
        public var text: String {
            switch self {
            case .word(let word): word
            case .uri(let uri): uri
            }
        }
    }

    /// Reads a value of `vocabulary`; nil when it is neither a CBV term nor a URI (a bare
    /// word outside the CBV, or a CBV URI naming a word the CBV does not have).
    public static func term(_ value: String, in vocabulary: Vocabulary) -> Term? {
        let prefixes = [
            "https://ref.gs1.org/cbv/\(vocabulary.rawValue)-",
            "https://gs1.org/voc/\(vocabulary.rawValue)-",
            "urn:epcglobal:cbv:\(vocabulary.urnSegment):",
        ]
        for prefix in prefixes {
            if let word = value.dropPrefix(prefix) {
                return vocabulary.words.contains(String(word)) ? .word(String(word)) : nil
            }
        }
        if vocabulary.words.contains(value) { return .word(value) }
        return isURI(value) ? .uri(value) : nil
    }

    /// An absolute URI: a scheme, a colon, something after it (RFC 3986, loosely).
    public static func isURI(_ value: String) -> Bool {
        guard let colon = value.firstIndex(of: ":"), colon != value.startIndex, value.index(after: colon) != value.endIndex
        else { return false }
        let scheme = value[..<colon]
        guard let first = scheme.first, first.isASCII, first.isLetter else { return false }
        return scheme.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") }
            && !value.contains(where: { $0 == " " || $0 == "\n" || $0 == "\t" })
    }
}
