import PalletFlowCore

/// Reads and validates EPCIS 2.0 JSON / JSON-LD against the standard's JSON schema and
/// CBV 2.0: required fields per event type, `action` values, time and offset formats,
/// CBV words or URIs, numeric quantities, namespaced extensions.
public enum EPCISReader {
    /// Events per capture, announced as `GS1-EPCIS-Capture-Limit`.
    public static let captureLimit = 10_000

    public static let eventTypes: Set<String> = [
        "ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent",
    ]

    static let standardEventKeys: Set<String> = [
        "@context", "type", "eventID", "eventTime", "eventTimeZoneOffset", "recordTime", "certificationInfo",
        "errorDeclaration", "action", "bizStep", "disposition", "persistentDisposition", "readPoint", "bizLocation",
        "bizTransactionList", "sourceList", "destinationList", "sensorElementList", "epcList", "quantityList", "ilmd",
        "parentID", "childEPCs", "childQuantityList", "inputEPCList", "inputQuantityList", "outputEPCList",
        "outputQuantityList", "transformationID",
    ]

    /// Prefixes the GS1 EPCIS context itself binds.
    public static let contextPrefixes: [String: String] = [
        "epcis": "https://ref.gs1.org/epcis/", "cbv": "https://ref.gs1.org/cbv/", "gs1": "https://gs1.org/voc/",
        "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
        "owl": "http://www.w3.org/2002/07/owl#", "xsd": "http://www.w3.org/2001/XMLSchema#",
        "dcterms": "http://purl.org/dc/terms/", "schema": "http://schema.org/",
    ]

    /// An EPCISDocument.
    public static func readDocument(_ document: JSONValue) -> EPCISReading {
        var reading = EPCISReading()
        var check = Validator()
        guard let root = document.object else {
            reading.errors.append((nil, [FieldError("body", "must be a JSON object (an EPCISDocument)")]))
            return reading
        }
        reading.prefixes = prefixes(root["@context"], check: &check, path: "@context")
        if root["@context"] == nil { check.add("@context", "is required (the EPCIS 2.0 JSON-LD context)") }
        check.check(root["type"]?.string == "EPCISDocument", "type", "must be \"EPCISDocument\"")
        if let version = root["schemaVersion"] {
            check.check(version.string == "2.0" || version.string == "2.0.0", "schemaVersion", "must be \"2.0\"")
        } else {
            check.add("schemaVersion", "is required")
        }
        if let created = root["creationDate"] {
            check.check(created.string.flatMap(Instant.parse) != nil, "creationDate",
                        "must be an RFC 3339 date-time with offset")
        } else {
            check.add("creationDate", "is required")
        }
        guard let body = root["epcisBody"]?.object else {
            check.add("epcisBody", "is required: an object holding eventList")
            reading.errors.append((nil, check.errors))
            return reading
        }
        guard let list = body["eventList"]?.array else {
            check.add("epcisBody.eventList", "is required: an array of events")
            reading.errors.append((nil, check.errors))
            return reading
        }
        reading.eventCount = list.count
        if list.count > captureLimit {
            check.add("epcisBody.eventList", "holds \(list.count) events; at most \(captureLimit) per capture")
        }
        if !check.errors.isEmpty {
            reading.errors.append((nil, check.errors))
            return reading
        }
        for (index, value) in list.enumerated() {
            switch readEvent(value, index: index, path: "epcisBody.eventList[\(index)]", prefixes: reading.prefixes) {
            case .success(let event): reading.events.append(event)
            case .failure(let failure): reading.errors.append((index, failure.errors))
            }
        }
        return reading
    }

    /// One event sent on its own (`POST /events`), optionally with its own `@context`.
    public static func readSingleEvent(_ value: JSONValue) -> EPCISReading {
        var reading = EPCISReading()
        var check = Validator()
        reading.prefixes = prefixes(value["@context"], check: &check, path: "@context")
        reading.eventCount = 1
        reading.single = true
        if !check.errors.isEmpty {
            reading.errors.append((0, check.errors))
            return reading
        }
        switch readEvent(value, index: 0, path: "", prefixes: reading.prefixes) {
        case .success(let event): reading.events.append(event)
        case .failure(let failure): reading.errors.append((0, failure.errors))
        }
        return reading
    }

    /// The namespace prefixes bound by a JSON-LD `@context` (a URI, an object, or an
    /// array of both).
    static func prefixes(_ context: JSONValue?, check: inout Validator, path: String) -> [String: String] {
        var result = contextPrefixes
        func add(_ value: JSONValue, _ path: String) {
            switch value {
            case .string(let uri):
                check.check(CBV.isURI(uri), path, "must be a URI")
            case .object(let fields):
                for (prefix, namespace) in fields {
                    if let uri = namespace.string {
                        result[prefix] = uri
                    } else if let id = namespace["@id"]?.string {
                        result[prefix] = id
                    }
                }
            case .array(let items):
                for (index, item) in items.enumerated() {
                    if case .array = item {
                        check.add("\(path)[\(index)]", "must be a URI or an object")
                    } else {
                        add(item, "\(path)[\(index)]")
                    }
                }
            default:
                check.add(path, "must be a URI, an object or an array")
            }
        }
        if let context { add(context, path) }
        return result
    }

    static func readEvent(_ value: JSONValue, index: Int, path base: String,
                          prefixes: [String: String]) -> Result<EPCISEvent, ValidationFailure> {
        guard var fields = value.object else {
            return .failure(ValidationFailure([FieldError(base.isEmpty ? "body" : base, "must be an event object")]))
        }
        fields.removeValue(forKey: "recordTime")
        // Every part is read even after an error, so one answer lists all of the event's errors.
        var event = EventFields(fields: fields, base: base)
        let type = event.readType()
        event.checkExtensions(prefixes: prefixes)
        let eventID = event.readEventID()
        let (eventTime, offsetText) = event.readTime()
        let action = event.readAction(type: type)
        let bizStep = event.term("bizStep", .bizStep)
        let disposition = event.term("disposition", .disposition)
        let readPoint = event.location("readPoint")
        let bizLocation = event.location("bizLocation")
        let transactions = event.readBizTransactions(type: type)
        let sources = event.parties("sourceList", "source")
        let destinations = event.parties("destinationList", "destination")
        let epcs = event.readEPCs()
        let quantities = event.readQuantities()
        event.checkParent(type: type, action: action)
        let declaration = event.readErrorDeclaration(eventID: eventID)

        if !event.check.errors.isEmpty { return .failure(ValidationFailure(event.check.errors)) }
        return .success(EPCISEvent(
            index: index, type: type, eventID: eventID, eventTime: eventTime, eventTimeZoneOffset: offsetText!,
            action: action, bizStep: bizStep, disposition: disposition, readPoint: readPoint, bizLocation: bizLocation,
            bizTransactions: transactions, sources: sources, destinations: destinations, epcs: epcs,
            quantities: quantities, errorDeclaration: declaration, json: fields))
    }

    /// One event's fields being read, and the errors found so far in the order of the
    /// schema's parts, with paths starting at `base`.
    struct EventFields {
        let fields: [String: JSONValue]
        let base: String
        var check = Validator()

        func path(_ name: String) -> String { base.isEmpty ? name : base + "." + name }

        mutating func readType() -> String {
            let type = fields["type"]?.string ?? ""
            if fields["type"] == nil {
                check.add(path("type"), "is required")
            } else if !eventTypes.contains(type) {
                check.add(path("type"), "must be one of \(eventTypes.sorted().joined(separator: ", "))")
            }
            return type
        }

        /// A field the standard does not name is an extension: it must say whose it is.
        mutating func checkExtensions(prefixes: [String: String]) {
            for key in fields.keys.sorted() where !standardEventKeys.contains(key) {
                check.check(isNamespaced(key, prefixes: prefixes), path(key),
                            "is not an EPCIS field; an extension needs a namespace prefix declared in @context")
            }
        }

        mutating func readEventID() -> String? {
            guard let id = fields["eventID"] else { return nil }
            if let text = id.string, CBV.isURI(text), text.count <= 512 { return text }
            check.add(path("eventID"), "must be a URI of at most 512 characters")
            return nil
        }

        /// The event time carries eventTimeZoneOffset rather than the timestamp's own offset:
        /// EPCIS makes that field the local time where the event happened.
        mutating func readTime() -> (eventTime: Instant, offsetText: String?) {
            let offsetText = fields["eventTimeZoneOffset"]?.string
            var offset: Int?
            if fields["eventTimeZoneOffset"] == nil {
                check.add(path("eventTimeZoneOffset"), "is required, e.g. \"+02:00\"")
            } else if let text = offsetText, let minutes = parseOffset(text) {
                offset = minutes
            } else {
                check.add(path("eventTimeZoneOffset"), "must be an offset like \"+02:00\" or \"-06:00\"")
            }
            var eventTime = Instant(microsecondsSinceEpoch: 0)
            if let text = fields["eventTime"] {
                if let parsed = text.string.flatMap(Instant.parse) {
                    eventTime = Instant(microsecondsSinceEpoch: parsed.microsecondsSinceEpoch, offsetMinutes: offset ?? parsed.offsetMinutes)
                } else {
                    check.add(path("eventTime"), "must be an RFC 3339 date-time with offset, e.g. 2026-11-20T07:45:00+01:00")
                }
            } else {
                check.add(path("eventTime"), "is required")
            }
            return (eventTime, offsetText)
        }

        mutating func readAction(type: String) -> String? {
            let action = fields["action"]?.string
            if type == "TransformationEvent" {
                check.check(fields["action"] == nil, path("action"), "must be absent on a TransformationEvent")
            } else if let value = fields["action"] {
                check.check(action.map { ["ADD", "OBSERVE", "DELETE"].contains($0) } ?? false, path("action"),
                            "must be ADD, OBSERVE or DELETE, got \(value.string.map { "\"\($0)\"" } ?? value.kindName)")
            } else if eventTypes.contains(type) {
                check.add(path("action"), "is required on a \(type)")
            }
            return action
        }

        mutating func term(_ key: String, _ vocabulary: CBV.Vocabulary) -> CBV.Term? {
            guard let value = fields[key] else { return nil }
            guard let text = value.string, let term = CBV.term(text, in: vocabulary) else {
                check.add(path(key), "must be a CBV \(key) word (such as \(vocabulary.words.sorted().prefix(3).joined(separator: ", "))) or a URI")
                return nil
            }
            return term
        }

        mutating func location(_ key: String) -> String? {
            guard let value = fields[key] else { return nil }
            guard let id = value["id"]?.string, CBV.isURI(id) else {
                check.add(path(key + ".id"), "must be a URI (an SGLN such as urn:epc:id:sgln:4012345.00001.0)")
                return nil
            }
            return id
        }

        /// The delivery notes and orders an event cites; a TransactionEvent is about them,
        /// so it must cite one.
        mutating func readBizTransactions(type: String) -> [EPCISEvent.BizTransaction] {
            var transactions: [EPCISEvent.BizTransaction] = []
            if let value = fields["bizTransactionList"] {
                if let items = value.array {
                    for (position, item) in items.enumerated() {
                        let itemPath = path("bizTransactionList[\(position)]")
                        guard let text = item["bizTransaction"]?.string, CBV.isURI(text) else {
                            check.add(itemPath + ".bizTransaction", "is required: a URI")
                            continue
                        }
                        var type: CBV.Term?
                        if let raw = item["type"] {
                            type = raw.string.flatMap { CBV.term($0, in: .bizTransactionType) }
                            if type == nil { check.add(itemPath + ".type", "must be a CBV business transaction type or a URI") }
                        }
                        transactions.append(.init(type: type, value: text))
                    }
                } else {
                    check.add(path("bizTransactionList"), "must be an array")
                }
            }
            if type == "TransactionEvent", transactions.isEmpty, fields["bizTransactionList"]?.array != nil || fields["bizTransactionList"] == nil {
                check.add(path("bizTransactionList"), "is required on a TransactionEvent and must not be empty")
            }
            return transactions
        }

        mutating func parties(_ key: String, _ member: String) -> [EPCISEvent.Party] {
            guard let items = list(key, notAnArray: "must be an array") else { return [] }
            var result: [EPCISEvent.Party] = []
            for (position, item) in items.enumerated() {
                let itemPath = path("\(key)[\(position)]")
                let type = item["type"]?.string.flatMap { CBV.term($0, in: .sourceDestinationType) }
                if type == nil { check.add(itemPath + ".type", "must be owning_party, possessing_party, location or a URI") }
                let id = item[member]?.string
                if id == nil || !CBV.isURI(id!) { check.add(itemPath + "." + member, "is required: a URI") }
                if let type, let id { result.append(.init(type: type, id: id)) }
            }
            return result
        }

        /// The items of a list field; nil when the event has no such field, or (an error) when
        /// it is not an array.
        mutating func list(_ key: String, notAnArray message: String) -> [JSONValue]? {
            guard let value = fields[key] else { return nil }
            guard let items = value.array else {
                check.add(path(key), message)
                return nil
            }
            return items
        }

        /// Serialised GRAIs may come in any of the event types' EPC lists.
        mutating func readEPCs() -> [String] {
            var epcs: [String] = []
            for key in ["epcList", "childEPCs", "inputEPCList", "outputEPCList"] {
                guard let items = list(key, notAnArray: "must be an array of URIs") else { continue }
                for (position, item) in items.enumerated() {
                    if let text = item.string, CBV.isURI(text) {
                        epcs.append(text)
                    } else {
                        check.add(path("\(key)[\(position)]"), "must be a URI")
                    }
                }
            }
            return epcs
        }

        /// Pallet counts by class may come in any of the event types' quantity lists.
        mutating func readQuantities() -> [EPCISEvent.QuantityElement] {
            var quantities: [EPCISEvent.QuantityElement] = []
            for key in ["quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList"] {
                guard let items = list(key, notAnArray: "must be an array") else { continue }
                for (position, item) in items.enumerated() {
                    if let quantity = readQuantity(item, path: path("\(key)[\(position)]")) { quantities.append(quantity) }
                }
            }
            return quantities
        }

        mutating func readQuantity(_ item: JSONValue, path itemPath: String) -> EPCISEvent.QuantityElement? {
            guard item.object != nil else {
                check.add(itemPath, "must be an object with epcClass and quantity")
                return nil
            }
            let epcClass = item["epcClass"]?.string
            if epcClass == nil || !CBV.isURI(epcClass!) { check.add(itemPath + ".epcClass", "is required: a URI") }
            var quantity: Double?
            if let raw = item["quantity"] {
                if case .number(let number) = raw, number >= 0 {
                    quantity = number
                } else {
                    check.add(itemPath + ".quantity", "must be a non-negative number, got \(raw.kindName)")
                }
            }
            var uom: String?
            if let raw = item["uom"] {
                uom = raw.string
                check.check(uom.map { (2...3).contains($0.count) } ?? false, itemPath + ".uom",
                            "must be a UN/CEFACT unit code of 2 or 3 characters")
            }
            guard let epcClass else { return nil }
            return .init(epcClass: epcClass, quantity: quantity, uom: uom)
        }

        /// An aggregation names the parent it loads onto or unloads from; only an OBSERVE
        /// may leave it out.
        mutating func checkParent(type: String, action: String?) {
            guard ["AggregationEvent", "AssociationEvent"].contains(type) else { return }
            let needsParent = type == "AssociationEvent" || (action != nil && action != "OBSERVE")
            if let parent = fields["parentID"] {
                check.check(parent.string.map(CBV.isURI) ?? false, path("parentID"), "must be a URI")
            } else if needsParent {
                check.add(path("parentID"), "is required on \(type == "AssociationEvent" ? "an AssociationEvent" : "an AggregationEvent with action \(action ?? "")")")
            }
        }

        /// An error declaration retracts the event of the same eventID, so it needs one.
        mutating func readErrorDeclaration(eventID: String?) -> EPCISEvent.ErrorDeclaration? {
            guard let value = fields["errorDeclaration"] else { return nil }
            let declPath = path("errorDeclaration")
            let time = value["declarationTime"]?.string.flatMap(Instant.parse)
            if time == nil { check.add(declPath + ".declarationTime", "is required: an RFC 3339 date-time with offset") }
            var reason: CBV.Term?
            if let raw = value["reason"] {
                reason = raw.string.flatMap { CBV.term($0, in: .errorReason) }
                if reason == nil { check.add(declPath + ".reason", "must be did_not_occur, incorrect_data or a URI") }
            }
            var corrective: [String] = []
            if let raw = value["correctiveEventIDs"] {
                if let items = raw.array, items.allSatisfy({ $0.string.map(CBV.isURI) ?? false }) {
                    corrective = items.compactMap(\.string)
                } else {
                    check.add(declPath + ".correctiveEventIDs", "must be an array of event ID URIs")
                }
            }
            if eventID == nil { check.add(path("eventID"), "is required on an error declaration: it names the event retracted") }
            guard let time else { return nil }
            return .init(declarationTime: time, reason: reason, correctiveEventIDs: corrective)
        }
    }

    /// `prefix:name` with the prefix bound in the context, or a full URI as the key.
    static func isNamespaced(_ key: String, prefixes: [String: String]) -> Bool {
        if key.hasPrefix("http://") || key.hasPrefix("https://") || key.hasPrefix("urn:") { return true }
        guard let colon = key.firstIndex(of: ":"), colon != key.startIndex, key.index(after: colon) != key.endIndex else {
            return false
        }
        return prefixes[String(key[..<colon])] != nil
    }

    /// `+02:00` / `-06:00` to minutes east of UTC.
    public static func parseOffset(_ text: String) -> Int? {
        let bytes = Array(text.utf8)
        guard bytes.count == 6, bytes[0] == UInt8(ascii: "+") || bytes[0] == UInt8(ascii: "-"), bytes[3] == UInt8(ascii: ":"),
              let hours = Int(String(decoding: bytes[1...2], as: UTF8.self)),
              let minutes = Int(String(decoding: bytes[4...5], as: UTF8.self)),
              bytes[1...2].allSatisfy({ $0 >= 48 && $0 <= 57 }), bytes[4...5].allSatisfy({ $0 >= 48 && $0 <= 57 }),
              hours <= 14, minutes <= 59
        else { return nil }
        return (bytes[0] == UInt8(ascii: "-") ? -1 : 1) * (hours * 60 + minutes)
    }
}
