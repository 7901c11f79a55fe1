import Crypto
import Foundation
import PalletFlowCore
import PalletFlowEPCIS
import PalletFlowStore

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
        let single = reading.single
        func base(_ index: Int) -> String { single ? "" : "epcisBody.eventList[\(index)]" }

        var errors: [EventError] = reading.errors.flatMap { entry in
            entry.errors.map { EventError(index: entry.index, eventID: nil, security: false, error: $0) }
        }
        var checked: [Checked] = []
        let now = api.store.now
        for var event in reading.events {
            let content = JSONValue.object(event.json).canonicalText()
            let hash = Array(SHA256.hash(data: Data(content.utf8)))
            let eventID: String
            if let id = event.eventID {
                eventID = id
            } else {
                eventID = "urn:uuid:" + Self.uuid(fromHash: hash).uuidString.lowercased()
                event.eventID = eventID
                event.eventIDAssigned = true
                event.json["eventID"] = .string(eventID)
            }
            let parties = PalletEventMapping.parties(of: event, in: pallets)
            if caller.role == .coordinator {
                errors.append(EventError(index: event.index, eventID: eventID, security: true, error: FieldError(
                    base(event.index), "a coordinator reads events; it does not capture them")))
                continue
            }
            if caller.role != .shipper && !parties.contains(caller.membership) {
                errors.append(EventError(index: event.index, eventID: eventID, security: true, error: FieldError(
                    base(event.index),
                    "you are not one of this event's parties (source or destination owning or possessing party, or the owner of its read point); only they and the shipper may capture it")))
                continue
            }
            switch PalletEventMapping.meaning(of: event, prefixes: reading.prefixes, directory: pallets, declarer: declarer,
                                              now: now, path: base(event.index)) {
            case .failure(let failure):
                errors.append(contentsOf: failure.errors.map { EventError(index: event.index, eventID: eventID, security: false, error: $0) })
            case .success(let meaning):
                checked.append(Checked(event: event, eventID: eventID, hash: hash, parties: parties, meaning: meaning))
            }
        }
        if behaviour != .proceed, !errors.isEmpty { throw Self.problem(errors, behaviour: behaviour) }

        let store = api.store
        let member = caller.membership
        let callerRole = caller.role
        let prefixes = reading.prefixes.filter { EPCISReader.contextPrefixes[$0.key] != $0.value }
        let contextText = JSONValue.object(prefixes.mapValues { .string($0) }).canonicalText()
        let plannedErrors = errors
        let (job, postedKinds) = try await store.transaction { connection -> (EPCISCaptureJob, [MovementKind]) in
            var errors = plannedErrors
            var outcomes: [Int: Outcome] = [:]
            try await store.lockEPCISCaptures(ecosystem: ecosystem.id, on: connection)
            let known = try await store.knownEPCISEvents(ecosystem: ecosystem.id, ids: Array(Set(checked.map(\.eventID))),
                                                         on: connection)
            var knownByKey: [String: KnownEPCISEvent] = [:]
            for event in known { knownByKey[event.eventID + (event.retraction ? "#retraction" : "")] = event }
            let retractedInDocument = Set(checked.filter(\.event.isRetraction).map(\.eventID))

            // Error declarations whose original posted a movement that still stands: their
            // corrective events in this document become the corrected movements.
            var correctionOf: [String: String] = [:]
            for item in checked where item.event.isRetraction {
                guard let movement = knownByKey[item.eventID]?.movement, movement.status != "reversed" else { continue }
                for corrective in item.event.errorDeclaration?.correctiveEventIDs ?? [] where correctionOf[corrective] == nil {
                    correctionOf[corrective] = item.eventID
                }
            }

            var stored: [Checked] = []
            var movementOf: [String: UUID] = [:]
            var toPost: [MovementToPost] = []
            var postedFor: [String: UUID] = [:]
            var corrections: [String: (Checked, MovementDeclaration)] = [:]
            // What the events posted, for the declarations counted once this commits.
            var postedKinds: [MovementKind] = []
            var seen = Set<String>()
            for item in checked {
                let outcomeBase = Outcome(index: item.event.index, eventID: item.eventID, assignedID: item.event.eventIDAssigned,
                                          outcome: "stored")
                if seen.contains(item.key) {
                    outcomes[item.event.index] = with(outcomeBase, "duplicate", detail: "repeats an earlier event of this document")
                    continue
                }
                seen.insert(item.key)
                if let earlier = knownByKey[item.key] {
                    if earlier.contentSHA256 == item.hash {
                        outcomes[item.event.index] = with(outcomeBase, "duplicate", movement: earlier.movement?.id,
                                                          detail: "already captured; nothing posted again")
                    } else {
                        errors.append(EventError(index: item.event.index, eventID: item.eventID, security: false, error: FieldError(
                            base(item.event.index) + (single ? "eventID" : ".eventID"),
                            "this eventID was already captured with different content; an EPCIS event is never edited: send an error declaration and a corrective event")))
                    }
                    continue
                }
                if item.event.isRetraction {
                    stored.append(item)
                    continue
                }
                // An error declaration may arrive before its event. It only ever cancels what its
                // own capturer sends: another party's event is not silently swallowed by it.
                if let early = knownByKey[item.eventID + "#retraction"], early.capturedBy != member {
                    errors.append(EventError(index: item.event.index, eventID: item.eventID, security: false, error: FieldError(
                        base(item.event.index) + (single ? "eventID" : ".eventID"),
                        "another party already sent an error declaration for this eventID before the event itself; it was not posted. Settle it with that party, and if the event did happen, send it under a new eventID")))
                    continue
                }
                if knownByKey[item.eventID + "#retraction"] != nil || retractedInDocument.contains(item.eventID) {
                    outcomes[item.event.index] = with(outcomeBase, "stored", detail: "retracted by an error declaration; nothing posted")
                    stored.append(item)
                    continue
                }
                switch item.meaning {
                case .nothingToPost(let reason):
                    outcomes[item.event.index] = with(outcomeBase, "stored", detail: "nothing posted: \(reason)")
                case .movement(let declaration, let voucher):
                    if let retraction = correctionOf[item.eventID] {
                        corrections[retraction] = (item, declaration)
                    } else {
                        let movement = try await api.prepare(
                            declaration, caller: caller, ecosystem: ecosystem, recordTime: store.now,
                            issueNotes: voucher != nil, serial: voucher, source: "epcis")
                        toPost.append(movement)
                        postedFor[item.eventID] = movement.id
                        movementOf[item.eventID] = movement.id
                        outcomes[item.event.index] = with(outcomeBase, "posted", movement: movement.id,
                                                          detail: "posted as a \(declaration.kind.rawValue)")
                    }
                }
                stored.append(item)
            }
            if !toPost.isEmpty {
                _ = try await store.post(ecosystem: ecosystem.id, by: member, toPost, idempotency: nil, on: connection)
                postedKinds += toPost.map(\.declaration.kind)
            }

            for item in stored where item.event.isRetraction {
                let outcomeBase = Outcome(index: item.event.index, eventID: item.eventID, assignedID: false, outcome: "stored")
                let pending = corrections[item.eventID]
                func postCorrectionPlainly() async throws {
                    guard let (corrective, declaration) = pending else { return }
                    let movement = try await api.prepare(declaration, caller: caller, ecosystem: ecosystem,
                                                         recordTime: store.now, issueNotes: false, serial: nil, source: "epcis")
                    _ = try await store.post(ecosystem: ecosystem.id, by: member, [movement], idempotency: nil, on: connection)
                    postedKinds.append(declaration.kind)
                    movementOf[corrective.eventID] = movement.id
                    outcomes[corrective.event.index] = with(
                        Outcome(index: corrective.event.index, eventID: corrective.eventID, assignedID: corrective.event.eventIDAssigned,
                                outcome: "posted"), "posted", movement: movement.id, detail: "posted as a \(declaration.kind.rawValue)")
                }
                guard let original = knownByKey[item.eventID]?.movement else {
                    outcomes[item.event.index] = with(outcomeBase, "stored",
                        detail: "retracts an event that was not captured here or posted nothing; nothing to reverse")
                    try await postCorrectionPlainly()
                    continue
                }
                guard original.status != "reversed" else {
                    outcomes[item.event.index] = with(outcomeBase, "stored", detail: "its movement was already reversed")
                    try await postCorrectionPlainly()
                    continue
                }
                guard callerRole == .shipper || (original.declarer == member && !original.confirmed) else {
                    errors.append(EventError(index: item.event.index, eventID: item.eventID, security: true, error: FieldError(
                        base(item.event.index),
                        "the movement this event posted has been confirmed; only the shipper may retract it now")))
                    stored.removeAll { $0.key == item.key }
                    if let (corrective, _) = pending { stored.removeAll { $0.key == corrective.key } }
                    continue
                }
                let reason = item.event.errorDeclaration?.reason?.text ?? "incorrect_data"
                let result = try await store.reverse(
                    ecosystem: ecosystem.id, movement: original.id, by: member,
                    right: callerRole == .shipper ? .always : .whileUnconfirmed, correction: pending?.1,
                    correctionConfirmed: false, reason: "EPCIS error declaration (\(reason))", on: connection)
                movementOf[item.eventID + "#retraction"] = result.reversal
                outcomes[item.event.index] = with(outcomeBase, "retracted", movement: result.reversal,
                                                  detail: "reversed movement \(original.id.uuidString.lowercased())")
                if let (corrective, declaration) = pending, let correction = result.correction {
                    postedKinds.append(declaration.kind)
                    movementOf[corrective.eventID] = correction
                    outcomes[corrective.event.index] = with(
                        Outcome(index: corrective.event.index, eventID: corrective.eventID, assignedID: corrective.event.eventIDAssigned,
                                outcome: "posted"), "posted", movement: correction,
                        detail: "posted as the correction of movement \(original.id.uuidString.lowercased())")
                }
            }
            if behaviour != .proceed, !errors.isEmpty { throw Self.problem(errors, behaviour: behaviour) }

            for error in errors where error.index != nil && outcomes[error.index!] == nil {
                outcomes[error.index!] = Outcome(index: error.index!, eventID: error.eventID ?? "", assignedID: false,
                                                 outcome: "rejected", detail: error.error.message)
            }
            let rows = stored.map { item -> EPCISEventRow in
                let event = item.event
                let movement = movementOf[item.key]
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
                    contentSHA256: item.hash, context: contextText, document: JSONValue.object(event.json).canonicalText())
            }
            let job = EPCISCaptureJob(
                id: newID(), member: member, createdAt: createdAt, finishedAt: store.now,
                errorBehaviour: behaviour.rawValue, success: errors.isEmpty, eventCount: reading.eventCount,
                outcomes: JSONValue.array(outcomes.keys.sorted().map { outcomes[$0]!.json }).canonicalText(),
                errors: JSONValue.array(errors.map(\.json)).canonicalText())
            try await store.recordEPCISCapture(ecosystem: ecosystem.id, job: job, events: rows, on: connection)
            return (job, postedKinds)
        }
        api.metrics.declared(postedKinds, source: .epcis)
        api.metrics.captured(job.success ? .success : .partial)
        return job
    }

    func with(_ outcome: Outcome, _ kind: String, movement: UUID? = nil, detail: String? = nil) -> Outcome {
        var outcome = outcome
        outcome.outcome = kind
        outcome.movement = movement
        outcome.detail = detail
        return outcome
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
