import Foundation
import Logging
import NIOCore
import PalletFlowCore
import PostgresNIO

/// A captured EPCIS event as stored: canonical identifiers for queries, the JSON as sent.
public struct EPCISEventRow: Sendable {
    public var eventID: String
    public var retraction: Bool
    public var eventType: String
    public var eventTime: Instant
    public var eventOffset: String
    public var bizStep: String?
    public var disposition: String?
    public var readPoint: String?
    public var bizLocation: String?
    public var epcClasses: [String]
    public var sourceOwning: [String]
    public var sourcePossessing: [String]
    public var destinationOwning: [String]
    public var destinationPossessing: [String]
    public var parties: [UUID]
    public var movement: UUID?
    public var contentSHA256: [UInt8]
    /// JSON object text: prefix to namespace.
    public var context: String
    /// JSON object text: the event as sent, with its eventID.
    public var document: String

    public init(eventID: String, retraction: Bool, eventType: String, eventTime: Instant, eventOffset: String,
                bizStep: String?, disposition: String?, readPoint: String?, bizLocation: String?, epcClasses: [String],
                sourceOwning: [String], sourcePossessing: [String], destinationOwning: [String],
                destinationPossessing: [String], parties: [UUID], movement: UUID?, contentSHA256: [UInt8],
                context: String, document: String) {
        self.eventID = eventID
        self.retraction = retraction
        self.eventType = eventType
        self.eventTime = eventTime
        self.eventOffset = eventOffset
        self.bizStep = bizStep
        self.disposition = disposition
        self.readPoint = readPoint
        self.bizLocation = bizLocation
        self.epcClasses = epcClasses
        self.sourceOwning = sourceOwning
        self.sourcePossessing = sourcePossessing
        self.destinationOwning = destinationOwning
        self.destinationPossessing = destinationPossessing
        self.parties = parties
        self.movement = movement
        self.contentSHA256 = contentSHA256
        self.context = context
        self.document = document
    }
}

/// What is already known of an eventID in this ecosystem.
public struct KnownEPCISEvent: Sendable {
    public var eventID: String
    public var retraction: Bool
    public var contentSHA256: [UInt8]
    public var movement: PostedMovement?
    /// The member who captured it.
    public var capturedBy: UUID
}

public struct EPCISCaptureJob: Sendable {
    public var id: UUID
    public var member: UUID
    public var createdAt: Instant
    public var finishedAt: Instant
    public var errorBehaviour: String
    public var success: Bool
    public var eventCount: Int
    /// JSON array texts.
    public var outcomes: String
    public var errors: String

    public init(id: UUID, member: UUID, createdAt: Instant, finishedAt: Instant, errorBehaviour: String, success: Bool,
                eventCount: Int, outcomes: String, errors: String) {
        self.id = id
        self.member = member
        self.createdAt = createdAt
        self.finishedAt = finishedAt
        self.errorBehaviour = errorBehaviour
        self.success = success
        self.eventCount = eventCount
        self.outcomes = outcomes
        self.errors = errors
    }
}

/// EPCIS query parameters, already resolved: canonical identifiers for captured events,
/// ecosystem ids and movement kinds for movements declared through the plain API.
public struct EPCISEventFilter: Sendable {
    public var bizSteps: [String]?
    public var ledgerKinds: [MovementKind]?
    public var from: Instant?
    public var until: Instant?
    public var epcClasses: [String]?
    public var palletTypes: [UUID] = []
    public var sourceOwning: [String]?
    public var sourceOwningIDs: [UUID] = []
    public var destinationOwning: [String]?
    public var destinationOwningIDs: [UUID] = []
    public var destinationPossessing: [String]?
    public var destinationPossessingIDs: [UUID] = []
    public var readPoints: [String]?
    public var readPointSites: [UUID] = []
    public var eventIDs: [String]?
    /// A partner sees the events it is named in or captured, and the movements it takes part in.
    public var visibleTo: UUID?
    public var after: (time: Instant, key: String)?
    public var limit: Int = 100

    public init() {}
}

/// One row of a query answer: a captured event's JSON, or a movement to show as an event.
public enum EPCISQueryRow: Sendable {
    case captured(sortTime: Instant, sortKey: String, document: String, recordTime: Instant, context: String)
    case ledger(sortTime: Instant, sortKey: String, movement: PostedMovement, correction: UUID?)

    public var sortTime: Instant {
        switch self {
        case .captured(let time, _, _, _, _), .ledger(let time, _, _, _): time
        }
    }

    public var sortKey: String {
        switch self {
        case .captured(_, let key, _, _, _), .ledger(_, let key, _, _): key
        }
    }
}

extension Store {
    /// Serialises captures of one ecosystem, so a re-sent eventID is seen as captured.
    public func lockEPCISCaptures(ecosystem: UUID, on connection: PostgresConnection) async throws {
        try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(ecosystem)::text, 11))", logger: logger)
    }

    /// Events already captured under these ids, with the movements they posted.
    public func knownEPCISEvents(ecosystem: UUID, ids: [String], on connection: PostgresConnection) async throws -> [KnownEPCISEvent] {
        var rows: [(String, Bool, [UInt8], UUID?, UUID)] = []
        for try await (id, retraction, hash, movement, capturer) in try await connection.query("""
            SELECT event_id, retraction, content_sha256, movement_id, captured_by FROM epcis_events
            WHERE ecosystem_id = \(ecosystem) AND event_id = ANY(\(ids)::text[])
            """, logger: logger).decode((String, Bool, ByteBuffer, UUID?, UUID).self) {
            rows.append((id, retraction, Array(buffer: hash), movement, capturer))
        }
        let movementIDs = rows.compactMap(\.3)
        let movements = movementIDs.isEmpty ? [:] : try await self.movements(ecosystem: ecosystem, ids: movementIDs)
        return rows.map {
            KnownEPCISEvent(eventID: $0.0, retraction: $0.1, contentSHA256: $0.2, movement: $0.3.flatMap { movements[$0] },
                            capturedBy: $0.4)
        }
    }

    /// Writes a capture job and its events in one statement.
    public func recordEPCISCapture(ecosystem: UUID, job: EPCISCaptureJob, events: [EPCISEventRow],
                                   on connection: PostgresConnection) async throws {
        func texts(_ values: [[String]]) -> [String] { values.map { jsonArray($0) } }
        let query: PostgresQuery = """
            WITH job AS (
                INSERT INTO epcis_capture_jobs (ecosystem_id, id, membership_id, created_at, finished_at, error_behaviour,
                                                success, event_count, outcomes, errors)
                VALUES (\(ecosystem), \(job.id), \(job.member),
                        'epoch'::timestamptz + \(job.createdAt.microsecondsSinceEpoch)::int8 * interval '1 microsecond',
                        'epoch'::timestamptz + \(job.finishedAt.microsecondsSinceEpoch)::int8 * interval '1 microsecond',
                        \(job.errorBehaviour), \(job.success), \(job.eventCount), \(job.outcomes)::jsonb, \(job.errors)::jsonb)
                RETURNING id
            )
            INSERT INTO epcis_events (ecosystem_id, event_id, retraction, event_type, event_time, event_offset, record_time,
                biz_step, disposition, read_point, biz_location, epc_classes, source_owning, source_possessing,
                destination_owning, destination_possessing, parties, captured_by, capture_id, movement_id,
                content_sha256, context, document)
            SELECT \(ecosystem), x.event_id, x.retraction, x.event_type,
                   'epoch'::timestamptz + x.event_us * interval '1 microsecond', x.event_offset,
                   'epoch'::timestamptz + \(job.finishedAt.microsecondsSinceEpoch)::int8 * interval '1 microsecond',
                   nullif(x.biz_step, ''), nullif(x.disposition, ''), nullif(x.read_point, ''), nullif(x.biz_location, ''),
                   ARRAY(SELECT jsonb_array_elements_text(x.epc_classes::jsonb)),
                   ARRAY(SELECT jsonb_array_elements_text(x.source_owning::jsonb)),
                   ARRAY(SELECT jsonb_array_elements_text(x.source_possessing::jsonb)),
                   ARRAY(SELECT jsonb_array_elements_text(x.destination_owning::jsonb)),
                   ARRAY(SELECT jsonb_array_elements_text(x.destination_possessing::jsonb)),
                   ARRAY(SELECT jsonb_array_elements_text(x.parties::jsonb)::uuid),
                   \(job.member), (SELECT id FROM job), nullif(x.movement, \(noneID)), decode(x.content, 'hex'),
                   x.context::jsonb, x.document::jsonb
            FROM unnest(\(events.map(\.eventID))::text[], \(events.map(\.retraction))::bool[], \(events.map(\.eventType))::text[],
                        \(events.map(\.eventTime.microsecondsSinceEpoch))::int8[], \(events.map(\.eventOffset))::text[],
                        \(events.map { $0.bizStep ?? "" })::text[], \(events.map { $0.disposition ?? "" })::text[],
                        \(events.map { $0.readPoint ?? "" })::text[], \(events.map { $0.bizLocation ?? "" })::text[],
                        \(texts(events.map(\.epcClasses)))::text[], \(texts(events.map(\.sourceOwning)))::text[],
                        \(texts(events.map(\.sourcePossessing)))::text[], \(texts(events.map(\.destinationOwning)))::text[],
                        \(texts(events.map(\.destinationPossessing)))::text[],
                        \(texts(events.map { $0.parties.map { $0.uuidString.lowercased() } }))::text[],
                        \(events.map { $0.movement ?? noneID })::uuid[],
                        \(events.map { $0.contentSHA256.map { String(format: "%02x", $0) }.joined() })::text[],
                        \(events.map(\.context))::text[], \(events.map(\.document))::text[])
                 AS x(event_id, retraction, event_type, event_us, event_offset, biz_step, disposition, read_point,
                      biz_location, epc_classes, source_owning, source_possessing, destination_owning,
                      destination_possessing, parties, movement, content, context, document)
            """
        try await connection.query(query, logger: logger)
        try await audit(connection, ecosystem: ecosystem, by: job.member, action: "epcis.capture", subject: job.id)
    }

    public func epcisCaptureJob(ecosystem: UUID, id: UUID) async throws -> EPCISCaptureJob? {
        for try await (member, created, finished, behaviour, success, count, outcomes, errors) in try await client.query("""
            SELECT membership_id, created_at, finished_at, error_behaviour, success, event_count, outcomes::text, errors::text
            FROM epcis_capture_jobs WHERE ecosystem_id = \(ecosystem) AND id = \(id)
            """, logger: logger).decode((UUID, Date, Date, String, Bool, Int32, String, String).self) {
            return EPCISCaptureJob(id: id, member: member, createdAt: Instant(created), finishedAt: Instant(finished),
                                   errorBehaviour: behaviour, success: success, eventCount: Int(count), outcomes: outcomes,
                                   errors: errors)
        }
        return nil
    }

    /// Captured events and movements declared through the plain API, in event time order,
    /// one page at a time (keyset paging on event time and key).
    public func epcisEvents(ecosystem: UUID, _ filter: EPCISEventFilter) async throws -> [EPCISQueryRow] {
        let none = noneID
        let afterTime = filter.after?.time.microsecondsSinceEpoch ?? Int64.min
        let afterKey = filter.after?.key ?? ""
        let query: PostgresQuery = """
            WITH captured AS (
                SELECT e.event_time, e.event_id || CASE WHEN e.retraction THEN '#retraction' ELSE '' END AS sort_key,
                       e.document::text AS document, e.record_time, e.context::text AS context, NULL::uuid AS movement_id,
                       NULL::uuid AS reverses_id
                FROM epcis_events e
                WHERE e.ecosystem_id = \(ecosystem)
                  AND (\(filter.visibleTo ?? none) = \(none) OR e.captured_by = \(filter.visibleTo ?? none)
                       OR \(filter.visibleTo ?? none) = ANY(e.parties))
                  AND (\(filter.bizSteps == nil) OR e.biz_step = ANY(\(filter.bizSteps ?? [])::text[]))
                  AND (\(filter.epcClasses == nil) OR e.epc_classes && \(filter.epcClasses ?? [])::text[])
                  AND (\(filter.sourceOwning == nil) OR e.source_owning && \(filter.sourceOwning ?? [])::text[])
                  AND (\(filter.destinationOwning == nil) OR e.destination_owning && \(filter.destinationOwning ?? [])::text[])
                  AND (\(filter.destinationPossessing == nil)
                       OR e.destination_possessing && \(filter.destinationPossessing ?? [])::text[])
                  AND (\(filter.readPoints == nil) OR e.read_point = ANY(\(filter.readPoints ?? [])::text[]))
                  AND (\(filter.eventIDs == nil) OR e.event_id = ANY(\(filter.eventIDs ?? [])::text[]))
            ), ledger AS (
                SELECT m.event_time,
                       'urn:uuid:' || coalesce(m.reverses_id, m.id)::text
                           || CASE WHEN m.reverses_id IS NOT NULL THEN '#retraction' ELSE '' END AS sort_key,
                       NULL::text AS document, m.record_time, NULL::text AS context, m.id AS movement_id, m.reverses_id
                FROM movements m
                WHERE m.ecosystem_id = \(ecosystem) AND m.source <> 'epcis'
                  AND NOT EXISTS (SELECT 1 FROM epcis_events x WHERE x.ecosystem_id = m.ecosystem_id AND x.movement_id = m.id)
                  AND (\(filter.visibleTo ?? none) = \(none) OR m.declarer_id = \(filter.visibleTo ?? none)
                       OR m.from_party_id = \(filter.visibleTo ?? none) OR m.to_party_id = \(filter.visibleTo ?? none))
                  AND (\(filter.ledgerKinds == nil) OR m.kind::text = ANY(\((filter.ledgerKinds ?? []).map(\.rawValue))::text[]))
                  AND (\(filter.epcClasses == nil) OR EXISTS (
                        SELECT 1 FROM movement_lines l WHERE l.ecosystem_id = m.ecosystem_id AND l.movement_id = m.id
                          AND l.pallet_type_id = ANY(\(filter.palletTypes)::uuid[])))
                  AND (\(filter.sourceOwning == nil) OR (m.kind IN ('pickup', 'transfer')
                       AND m.from_party_id = ANY(\(filter.sourceOwningIDs)::uuid[])))
                  AND (\(filter.destinationOwning == nil) OR (m.kind IN ('delivery', 'return', 'transfer', 'purchase', 'loss')
                       AND m.to_party_id = ANY(\(filter.destinationOwningIDs)::uuid[])))
                  AND (\(filter.destinationPossessing == nil) OR (m.kind = 'pickup'
                       AND m.to_party_id = ANY(\(filter.destinationPossessingIDs)::uuid[])))
                  AND (\(filter.readPoints == nil) OR
                       CASE WHEN m.kind IN ('delivery', 'return', 'purchase') THEN m.to_site_id ELSE m.from_site_id END
                         = ANY(\(filter.readPointSites)::uuid[]))
                  AND (\(filter.eventIDs == nil) OR 'urn:uuid:' || coalesce(m.reverses_id, m.id)::text
                       = ANY(\(filter.eventIDs ?? [])::text[]))
            )
            -- The correction of a retraction is looked up for the page's rows only, after the
            -- sort and the limit (sql/0014: made for every candidate row, it took minutes).
            SELECT (extract(epoch FROM p.event_time) * 1000000)::int8, p.sort_key, p.document,
                   (extract(epoch FROM p.record_time) * 1000000)::int8, p.context, p.movement_id,
                   CASE WHEN p.reverses_id IS NOT NULL THEN
                       (SELECT c.id FROM movements c WHERE c.ecosystem_id = \(ecosystem) AND c.corrects_id = p.reverses_id
                        LIMIT 1)
                   END
            FROM (
            SELECT u.* FROM (SELECT * FROM captured UNION ALL SELECT * FROM ledger) u
            WHERE (\(filter.from == nil) OR u.event_time >= 'epoch'::timestamptz + \(filter.from?.microsecondsSinceEpoch ?? 0)::int8 * interval '1 microsecond')
              AND (\(filter.until == nil) OR u.event_time < 'epoch'::timestamptz + \(filter.until?.microsecondsSinceEpoch ?? 0)::int8 * interval '1 microsecond')
              AND (\(filter.after == nil) OR (u.event_time, u.sort_key)
                   > ('epoch'::timestamptz + \(afterTime == Int64.min ? 0 : afterTime)::int8 * interval '1 microsecond', \(afterKey)::text))
            ORDER BY u.event_time, u.sort_key
            LIMIT \(filter.limit)
            ) p
            ORDER BY p.event_time, p.sort_key
            """
        var raw: [(Int64, String, String?, Int64, String?, UUID?, UUID?)] = []
        for try await row in try await client.query(query, logger: logger).decode(
            (Int64, String, String?, Int64, String?, UUID?, UUID?).self) {
            raw.append(row)
        }
        let movements = try await self.movements(ecosystem: ecosystem, ids: raw.compactMap(\.5))
        return raw.compactMap { time, key, document, record, context, movement, correction in
            if let document {
                return .captured(sortTime: Instant(microsecondsSinceEpoch: time), sortKey: key, document: document,
                                 recordTime: Instant(microsecondsSinceEpoch: record), context: context ?? "{}")
            }
            guard let movement = movement.flatMap({ movements[$0] }) else { return nil }
            return .ledger(sortTime: Instant(microsecondsSinceEpoch: time), sortKey: key, movement: movement, correction: correction)
        }
    }
}

func jsonArray(_ values: [String]) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: values, options: [])) ?? Data("[]".utf8)
    return String(decoding: data, as: UTF8.self)
}
