import PalletFlowCore

/// One EPCIS event as captured: the fields PalletFlow reads, and the JSON as sent.
public struct EPCISEvent: Sendable {
    public struct QuantityElement: Sendable, Hashable {
        public var epcClass: String
        public var quantity: Double?
        public var uom: String?
    }

    public struct BizTransaction: Sendable, Hashable {
        public var type: CBV.Term?
        public var value: String
    }

    /// A `sourceList` or `destinationList` entry.
    public struct Party: Sendable, Hashable {
        public var type: CBV.Term
        public var id: String
    }

    public struct ErrorDeclaration: Sendable, Hashable {
        public var declarationTime: Instant
        public var reason: CBV.Term?
        public var correctiveEventIDs: [String]
    }

    /// Position in the captured document's `eventList`.
    public var index: Int
    public var type: String
    /// As sent, or assigned by PalletFlow when the event had none.
    public var eventID: String?
    public var eventIDAssigned = false
    /// The event time, carrying `eventTimeZoneOffset` as its offset.
    public var eventTime: Instant
    public var eventTimeZoneOffset: String
    public var action: String?
    public var bizStep: CBV.Term?
    public var disposition: CBV.Term?
    public var readPoint: String?
    public var bizLocation: String?
    public var bizTransactions: [BizTransaction]
    public var sources: [Party]
    public var destinations: [Party]
    /// Instance identifiers: `epcList`, `childEPCs`, `inputEPCList`, `outputEPCList`.
    public var epcs: [String]
    /// Class quantities of all the event's quantity lists.
    public var quantities: [QuantityElement]
    public var errorDeclaration: ErrorDeclaration?
    /// The event's JSON as sent, without `recordTime` (the repository sets it).
    public var json: [String: JSONValue]

    /// An error declaration retracts the earlier event with the same eventID; it is not a
    /// duplicate of it.
    public var isRetraction: Bool { errorDeclaration != nil }

    /// The value of a namespaced extension field, e.g. `b4l:qualityLevel`, whatever
    /// prefix the sender bound to the namespace.
    public func extensionValue(namespace: String, name: String, prefixes: [String: String]) -> JSONValue? {
        for (key, value) in json {
            guard let colon = key.firstIndex(of: ":") else { continue }
            let prefix = String(key[..<colon])
            let local = key[key.index(after: colon)...]
            if local == name, prefixes[prefix] == namespace { return value }
            if key == namespace + name { return value }
        }
        return nil
    }

    public func sources(_ word: String) -> [String] { sources.filter { $0.type == .word(word) }.map(\.id) }
    public func destinations(_ word: String) -> [String] { destinations.filter { $0.type == .word(word) }.map(\.id) }
}

/// What reading a document gave: its events, the errors of each invalid event, and the
/// namespace prefixes its `@context` declares.
public struct EPCISReading: Sendable {
    public var events: [EPCISEvent] = []
    /// Errors per event index; `nil` index for the document itself.
    public var errors: [(index: Int?, errors: [FieldError])] = []
    public var prefixes: [String: String] = [:]
    public var eventCount = 0
    /// Read from `POST /events`: field paths start at the event, not at `epcisBody`.
    public var single = false

    public var isValid: Bool { errors.isEmpty }
    public var allErrors: [FieldError] { errors.flatMap(\.errors) }
}
