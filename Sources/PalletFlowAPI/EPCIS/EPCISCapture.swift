import Crypto
import Foundation
import PalletFlowCore
import PalletFlowEPCIS
import PalletFlowStore
import PostgresNIO

/// One capture: checks every event (EPCIS validity, the caller's right to send it, its
/// pallet meaning), then in one transaction posts the handovers, turns error
/// declarations into reversals with their corrected movements, and records the events
/// and the job. Captures of one ecosystem are serialised, so a re-sent eventID is
/// always seen and posts nothing twice.
struct EPCISCapture {
    let api: APIImplementation
    let caller: Caller

    static let securityType = "epcisException:SecurityException"
    static let validationType = "epcisException:ValidationException"

    struct EventError {
        var index: Int?
        var eventID: String?
        var security: Bool
        var error: FieldError

        var json: JSONValue {
            var fields: [String: JSONValue] = [
                "type": .string(security ? EPCISCapture.securityType : EPCISCapture.validationType),
                "field": .string(error.field), "message": .string(error.message),
            ]
            if let index { fields["eventIndex"] = .number(Double(index)) }
            if let eventID { fields["eventID"] = .string(eventID) }
            return .object(fields)
        }
    }

    struct Outcome {
        var index: Int
        var eventID: String
        var assignedID: Bool
        var outcome: String
        var movement: UUID?
        var detail: String?

        var json: JSONValue {
            var fields: [String: JSONValue] = [
                "eventIndex": .number(Double(index)), "eventID": .string(eventID), "outcome": .string(outcome),
            ]
            if assignedID { fields["eventIDAssigned"] = .bool(true) }
            if let movement { fields["movementId"] = .string(movement.uuidString.lowercased()) }
            if let detail { fields["detail"] = .string(detail) }
            return .object(fields)
        }
    }

    /// An event that passed the checks, with what it means for the ledger.
    struct Checked {
        var event: EPCISEvent
        var eventID: String
        var hash: [UInt8]
        var parties: Set<UUID>
        var meaning: PalletEventMeaning
        var key: String { eventID + (event.isRetraction ? "#retraction" : "") }
    }

    func run(_ reading: EPCISReading, behaviour: CaptureBehaviour) async throws -> EPCISCaptureJob {
        let createdAt = api.store.now
        let (directory, ecosystem) = try await api.directoryCache.get(caller.ecosystem, store: api.store)
        guard let declarer = directory.members[caller.membership] else { throw Problem.invalidToken }
        // Parties the capturer may not know of read as unknown ones (a carrier never learns
        // which other carriers serve the shipper).
        let pallets = PalletDirectory(directory.seen(by: declarer))
        let (checked, plannedErrors) = checkEvents(of: reading, in: pallets, declarer: declarer)
        if behaviour != .proceed, !plannedErrors.isEmpty { throw Self.problem(plannedErrors, behaviour: behaviour) }

        let store = api.store
        return try await store.transaction { connection -> EPCISCaptureJob in
            try await store.lockEPCISCaptures(ecosystem: ecosystem.id, on: connection)
            let known = try await findKnownEvents(checked, ecosystem: ecosystem.id, on: connection)
            var ledger = CaptureLedger(capture: self, ecosystem: ecosystem, connection: connection, single: reading.single,
                                       known: known, errors: plannedErrors)
            let corrections = try await ledger.postHandovers(checked)
            try await ledger.turnErrorDeclarationsIntoReversals(corrections)
            if behaviour != .proceed, !ledger.errors.isEmpty { throw Self.problem(ledger.errors, behaviour: behaviour) }
            return try await ledger.recordCapture(reading, behaviour: behaviour, createdAt: createdAt)
        }
    }

    /// Checks every event before anything is locked: its id, whether the caller may send it,
    /// and what it means for the ledger. Errors keep the document's order, as reported.
    func checkEvents(of reading: EPCISReading, in pallets: PalletDirectory, declarer: Member)
        -> (checked: [Checked], errors: [EventError])
    {
        var errors: [EventError] = reading.errors.flatMap { entry in
            entry.errors.map { EventError(index: entry.index, eventID: nil, security: false, error: $0) }
        }
        var checked: [Checked] = []
        let now = api.store.now
        for var event in reading.events {
            let hash = Array(SHA256.hash(data: Data(JSONValue.object(event.json).canonicalText().utf8)))
            let eventID = Self.identify(&event, hash: hash)
            let parties = PalletEventMapping.parties(of: event, in: pallets)
            let path = Self.path(of: event.index, single: reading.single)
            if let refusal = captureRefusal(parties: parties, path: path) {
                errors.append(EventError(index: event.index, eventID: eventID, security: true, error: refusal))
                continue
            }
            switch PalletEventMapping.meaning(of: event, prefixes: reading.prefixes, directory: pallets, declarer: declarer,
                                              now: now, path: path) {
            case .failure(let failure):
                errors.append(contentsOf: failure.errors.map { EventError(index: event.index, eventID: eventID, security: false, error: $0) })
            case .success(let meaning):
                checked.append(Checked(event: event, eventID: eventID, hash: hash, parties: parties, meaning: meaning))
            }
        }
        return (checked, errors)
    }

    /// An event sent without an eventID gets one made from its content (hashed before the
    /// id is added), so the same event sent again is seen as a repeat.
    static func identify(_ event: inout EPCISEvent, hash: [UInt8]) -> String {
        if let id = event.eventID { return id }
        let eventID = "urn:uuid:" + uuid(fromHash: hash).uuidString.lowercased()
        event.eventID = eventID
        event.eventIDAssigned = true
        event.json["eventID"] = .string(eventID)
        return eventID
    }

    /// Only an event's own parties and the shipper put it in the ledger: a coordinator
    /// mediates between partners and declares nothing itself.
    func captureRefusal(parties: Set<UUID>, path: String) -> FieldError? {
        if caller.role == .coordinator {
            return FieldError(path, "a coordinator reads events; it does not capture them")
        }
        if caller.role != .shipper && !parties.contains(caller.membership) {
            return FieldError(
                path,
                "you are not one of this event's parties (source or destination owning or possessing party, or the owner of its read point); only they and the shipper may capture it")
        }
        return nil
    }

    /// Where an event's errors point: at the event itself for `POST /events`, at its place
    /// in the document's event list otherwise.
    static func path(of index: Int, single: Bool) -> String { single ? "" : "epcisBody.eventList[\(index)]" }

    /// The events of this document already captured in the ecosystem, keyed like
    /// `Checked.key`. Read under the captures' lock, so a retry always finds its first send.
    func findKnownEvents(_ checked: [Checked], ecosystem: UUID,
                         on connection: PostgresConnection) async throws -> [String: KnownEPCISEvent] {
        let known = try await api.store.knownEPCISEvents(ecosystem: ecosystem, ids: Array(Set(checked.map(\.eventID))),
                                                         on: connection)
        var knownByKey: [String: KnownEPCISEvent] = [:]
        for event in known { knownByKey[event.eventID + (event.retraction ? "#retraction" : "")] = event }
        return knownByKey
    }

    /// A corrective event waiting for its error declaration, whose reversal posts it.
    typealias Correction = (corrective: Checked, declaration: MovementDeclaration)

    /// A capture's work inside its transaction: what was already known, and the outcomes,
    /// errors and movements decided so far, in the order the events came.
    struct CaptureLedger {
        let capture: EPCISCapture
        let ecosystem: EcosystemRecord
        let connection: PostgresConnection
        let single: Bool
        let known: [String: KnownEPCISEvent]
        var errors: [EventError]
        var outcomes: [Int: Outcome] = [:]
        /// The events recorded with the job; a refused retraction takes its events out.
        var stored: [Checked] = []
        var movementOf: [String: UUID] = [:]

        var store: Store { capture.api.store }
        var member: UUID { capture.caller.membership }

        /// Posts, in one statement, the movements the new events mean, and keeps aside the
        /// corrective events that post with the reversal their error declaration asks for.
        mutating func postHandovers(_ checked: [Checked]) async throws -> [String: Correction] {
            let correctionOf = Self.correctionsAwaited(in: checked, known: known)
            let retractedInDocument = Set(checked.filter(\.event.isRetraction).map(\.eventID))
            var toPost: [MovementToPost] = []
            var corrections: [String: Correction] = [:]
            var seen = Set<String>()
            for item in checked {
                guard seen.insert(item.key).inserted else {
                    outcomes[item.event.index] = Self.outcome(of: item, "duplicate",
                                                              detail: "repeats an earlier event of this document")
                    continue
                }
                guard isNew(item) else { continue }
                if item.event.isRetraction {
                    stored.append(item)
                    continue
                }
                guard standsUnretracted(item, retractedInDocument: retractedInDocument) else { continue }
                switch item.meaning {
                case .nothingToPost(let reason):
                    outcomes[item.event.index] = Self.outcome(of: item, "stored", detail: "nothing posted: \(reason)")
                case .movement(let declaration, let voucher):
                    if let retraction = correctionOf[item.eventID] {
                        corrections[retraction] = (item, declaration)
                    } else {
                        toPost.append(try await prepareHandover(item, declaration, voucher: voucher))
                    }
                }
                stored.append(item)
            }
            if !toPost.isEmpty {
                _ = try await store.post(ecosystem: ecosystem.id, by: member, toPost, idempotency: nil, on: connection)
            }
            return corrections
        }

        /// Error declarations whose original posted a movement that still stands: their
        /// corrective events in this document become the corrected movements.
        static func correctionsAwaited(in checked: [Checked], known: [String: KnownEPCISEvent]) -> [String: String] {
            var correctionOf: [String: String] = [:]
            for item in checked where item.event.isRetraction {
                guard let movement = known[item.eventID]?.movement, movement.status != "reversed" else { continue }
                for corrective in item.event.errorDeclaration?.correctiveEventIDs ?? [] where correctionOf[corrective] == nil {
                    correctionOf[corrective] = item.eventID
                }
            }
            return correctionOf
        }

        /// An event captured before posts nothing again; its eventID sent with other content
        /// is refused, because an EPCIS event is never edited.
        mutating func isNew(_ item: Checked) -> Bool {
            guard let earlier = known[item.key] else { return true }
            if earlier.contentSHA256 == item.hash {
                outcomes[item.event.index] = Self.outcome(of: item, "duplicate", movement: earlier.movement?.id,
                                                          detail: "already captured; nothing posted again")
            } else {
                errors.append(EventError(index: item.event.index, eventID: item.eventID, security: false, error: FieldError(
                    eventIDPath(of: item),
                    "this eventID was already captured with different content; an EPCIS event is never edited: send an error declaration and a corrective event")))
            }
            return false
        }

        /// An error declaration may arrive before its event. It only ever cancels what its
        /// own capturer sends: another party's event is not silently swallowed by it.
        mutating func standsUnretracted(_ item: Checked, retractedInDocument: Set<String>) -> Bool {
            let early = known[item.eventID + "#retraction"]
            if let early, early.capturedBy != member {
                errors.append(EventError(index: item.event.index, eventID: item.eventID, security: false, error: FieldError(
                    eventIDPath(of: item),
                    "another party already sent an error declaration for this eventID before the event itself; it was not posted. Settle it with that party, and if the event did happen, send it under a new eventID")))
                return false
            }
            if early != nil || retractedInDocument.contains(item.eventID) {
                outcomes[item.event.index] = Self.outcome(of: item, "stored",
                                                          detail: "retracted by an error declaration; nothing posted")
                stored.append(item)
                return false
            }
            return true
        }

        mutating func prepareHandover(_ item: Checked, _ declaration: MovementDeclaration,
                                      voucher: String?) async throws -> MovementToPost {
            let movement = try await capture.api.prepare(
                declaration, caller: capture.caller, ecosystem: ecosystem, recordTime: store.now,
                issueNotes: voucher != nil, serial: voucher, source: "epcis")
            movementOf[item.eventID] = movement.id
            outcomes[item.event.index] = Self.outcome(of: item, "posted", movement: movement.id,
                                                      detail: "posted as a \(declaration.kind.rawValue)")
            return movement
        }

        /// Reverses the movement each error declaration's event posted, with its corrective
        /// event as the corrected movement. Consent rules of docs/ledger.md: the shipper may
        /// retract anything; a declarer only its own movement, while nobody has confirmed it.
        mutating func turnErrorDeclarationsIntoReversals(_ corrections: [String: Correction]) async throws {
            for item in stored where item.event.isRetraction {
                let pending = corrections[item.eventID]
                guard let original = known[item.eventID]?.movement else {
                    outcomes[item.event.index] = Self.retractionOutcome(
                        of: item, "stored", detail: "retracts an event that was not captured here or posted nothing; nothing to reverse")
                    try await postCorrectionPlainly(pending)
                    continue
                }
                guard original.status != "reversed" else {
                    outcomes[item.event.index] = Self.retractionOutcome(of: item, "stored", detail: "its movement was already reversed")
                    try await postCorrectionPlainly(pending)
                    continue
                }
                guard capture.caller.role == .shipper || (original.declarer == member && !original.confirmed) else {
                    refuseRetraction(item, correction: pending)
                    continue
                }
                try await reverse(original, retractedBy: item, correction: pending)
            }
        }

        /// With no standing movement to reverse, a corrective event is an ordinary movement.
        mutating func postCorrectionPlainly(_ pending: Correction?) async throws {
            guard let (corrective, declaration) = pending else { return }
            let movement = try await capture.api.prepare(declaration, caller: capture.caller, ecosystem: ecosystem,
                                                         recordTime: store.now, issueNotes: false, serial: nil, source: "epcis")
            _ = try await store.post(ecosystem: ecosystem.id, by: member, [movement], idempotency: nil, on: connection)
            movementOf[corrective.eventID] = movement.id
            outcomes[corrective.event.index] = Self.outcome(of: corrective, "posted", movement: movement.id,
                                                            detail: "posted as a \(declaration.kind.rawValue)")
        }

        /// A refused retraction stores neither itself nor its corrective event: sent again
        /// by the shipper, both are new.
        mutating func refuseRetraction(_ item: Checked, correction pending: Correction?) {
            errors.append(EventError(index: item.event.index, eventID: item.eventID, security: true, error: FieldError(
                EPCISCapture.path(of: item.event.index, single: single),
                "the movement this event posted has been confirmed; only the shipper may retract it now")))
            stored.removeAll { $0.key == item.key }
            if let (corrective, _) = pending { stored.removeAll { $0.key == corrective.key } }
        }

        mutating func reverse(_ original: PostedMovement, retractedBy item: Checked,
                              correction pending: Correction?) async throws {
            let reason = item.event.errorDeclaration?.reason?.text ?? "incorrect_data"
            let result = try await store.reverse(
                ecosystem: ecosystem.id, movement: original.id, by: member,
                right: capture.caller.role == .shipper ? .always : .whileUnconfirmed, correction: pending?.declaration,
                correctionConfirmed: false, reason: "EPCIS error declaration (\(reason))", on: connection)
            movementOf[item.eventID + "#retraction"] = result.reversal
            outcomes[item.event.index] = Self.retractionOutcome(of: item, "retracted", movement: result.reversal,
                                                                detail: "reversed movement \(original.id.uuidString.lowercased())")
            if let (corrective, _) = pending, let correction = result.correction {
                movementOf[corrective.eventID] = correction
                outcomes[corrective.event.index] = Self.outcome(
                    of: corrective, "posted", movement: correction,
                    detail: "posted as the correction of movement \(original.id.uuidString.lowercased())")
            }
        }

        /// Records every stored event with its movement, and the job with one outcome per
        /// event: an event refused with no outcome of its own reads as rejected.
        mutating func recordCapture(_ reading: EPCISReading, behaviour: CaptureBehaviour,
                                    createdAt: Instant) async throws -> EPCISCaptureJob {
            for error in errors where error.index != nil && outcomes[error.index!] == nil {
                outcomes[error.index!] = Outcome(index: error.index!, eventID: error.eventID ?? "", assignedID: false,
                                                 outcome: "rejected", detail: error.error.message)
            }
            // Only the prefixes the document adds to the standard context are kept with its events.
            let prefixes = reading.prefixes.filter { EPCISReader.contextPrefixes[$0.key] != $0.value }
            let contextText = JSONValue.object(prefixes.mapValues { .string($0) }).canonicalText()
            let rows = stored.map { Self.row(for: $0, movement: movementOf[$0.key], context: contextText) }
            let job = EPCISCaptureJob(
                id: newID(), member: member, createdAt: createdAt, finishedAt: store.now,
                errorBehaviour: behaviour.rawValue, success: errors.isEmpty, eventCount: reading.eventCount,
                outcomes: JSONValue.array(outcomes.keys.sorted().map { outcomes[$0]!.json }).canonicalText(),
                errors: JSONValue.array(errors.map(\.json)).canonicalText())
            try await store.recordEPCISCapture(ecosystem: ecosystem.id, job: job, events: rows, on: connection)
            return job
        }

        /// The stored form of an event, with the identifiers queries select on in canonical form.
        static func row(for item: Checked, movement: UUID?, context: String) -> EPCISEventRow {
            let event = item.event
            var classes = event.quantities.map { PalletDirectory.canonical($0.epcClass) }
            classes += event.epcs.compactMap { GS1Key.isSerialisedGRAI($0) ? GS1Key.graiClass($0)?.description : nil }
            return EPCISEventRow(
                eventID: item.eventID, retraction: event.isRetraction, eventType: event.type, eventTime: event.eventTime,
                eventOffset: event.eventTimeZoneOffset, bizStep: event.bizStep?.text, disposition: event.disposition?.text,
                readPoint: event.readPoint.map(PalletDirectory.canonical),
                bizLocation: event.bizLocation.map(PalletDirectory.canonical), epcClasses: Array(Set(classes)).sorted(),
                sourceOwning: event.sources("owning_party").map(PalletDirectory.canonical),
                sourcePossessing: event.sources("possessing_party").map(PalletDirectory.canonical),
                destinationOwning: event.destinations("owning_party").map(PalletDirectory.canonical),
                destinationPossessing: event.destinations("possessing_party").map(PalletDirectory.canonical),
                parties: item.parties.sorted { $0.uuidString < $1.uuidString }, movement: movement,
                contentSHA256: item.hash, context: context, document: JSONValue.object(event.json).canonicalText())
        }

        func eventIDPath(of item: Checked) -> String {
            EPCISCapture.path(of: item.event.index, single: single) + (single ? "eventID" : ".eventID")
        }

        static func outcome(of item: Checked, _ kind: String, movement: UUID? = nil, detail: String? = nil) -> Outcome {
            Outcome(index: item.event.index, eventID: item.eventID, assignedID: item.event.eventIDAssigned,
                    outcome: kind, movement: movement, detail: detail)
        }

        /// An error declaration's outcome leaves `eventIDAssigned` out: clients match it by
        /// the eventID it retracts, which the capturer always sends.
        static func retractionOutcome(of item: Checked, _ kind: String, movement: UUID? = nil,
                                      detail: String? = nil) -> Outcome {
            Outcome(index: item.event.index, eventID: item.eventID, assignedID: false,
                    outcome: kind, movement: movement, detail: detail)
        }
    }


    /// Under rollback, the first failing event's errors; under all, every event's.
    static func problem(_ errors: [EventError], behaviour: CaptureBehaviour) -> Problem {
        var reported = errors
        if behaviour == .rollback, let first = errors.map({ $0.index ?? -1 }).min() {
            reported = errors.filter { ($0.index ?? -1) == first }
        }
        let security = reported.contains(where: \.security)
        let fields = reported.map(\.error)
        if security {
            return EPCISInterface.exception(.forbidden, "SecurityException", "Not allowed to capture this event",
                                            detail: "\(fields.map(\.description).joined(separator: "; ")). Nothing of this capture was stored or posted.",
                                            errors: fields)
        }
        return EPCISInterface.validation(fields)
    }

    /// A name-based UUID (version 8) from an event's content hash: an event sent without
    /// an eventID gets the same id each time it is sent, so a retry is seen as a repeat.
    static func uuid(fromHash hash: [UInt8]) -> UUID {
        var bytes = Array(hash.prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x80
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}
