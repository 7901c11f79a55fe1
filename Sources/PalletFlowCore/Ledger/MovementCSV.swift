import Foundation

/// The CSV form of movements: one row per line; rows sharing a `movement_ref` form one
/// movement (an empty ref makes the row a movement of its own). Parties may be given by
/// member id or PGLN, sites by id or SGLN, pallet types by id or code.
public enum MovementCSV {
    public static let columns = [
        "movement_ref", "kind", "event_time", "from_party", "from_site", "to_party", "to_site", "pallet_type",
        "quality", "quantity", "exchanged_quantity", "exchanged_quality", "target_quality", "delivery_note", "cmr",
        "order", "pallet_note", "note",
    ]
    public static let required: Set<String> = ["kind", "event_time", "pallet_type", "quantity"]

    public struct Parsed: Sendable {
        public var declarations: [MovementDeclaration]
        /// For each declaration, the CSV row numbers (1 = header) of its lines.
        public var rows: [[Int]]
    }

    public static func parse(_ text: String, directory: Directory) -> (Parsed?, [FieldError]) {
        let table: [[String]]
        do {
            table = try CSV.parse(text)
        } catch let error as CSV.ParseError {
            return (nil, [FieldError("row[\(error.row)]", error.message)])
        } catch {
            return (nil, [FieldError("body", "is not valid CSV")])
        }
        guard let header = table.first else { return (nil, [FieldError("body", "is empty: a header row is required")]) }
        let names = header.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        var check = Validator()
        for name in names where !columns.contains(name) {
            check.add("header", "unknown column \"\(name)\"; the columns are \(columns.joined(separator: ", "))")
        }
        for name in required where !names.contains(name) { check.add("header", "the column \"\(name)\" is required") }
        guard check.errors.isEmpty else { return (nil, check.errors) }
        let index = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })

        var declarations: [MovementDeclaration] = []
        var rowNumbers: [[Int]] = []
        var byReference: [String: Int] = [:]
        for (offset, fields) in table.dropFirst().enumerated() {
            let rowNumber = offset + 2
            let prefix = "row[\(rowNumber)]"
            func value(_ name: String) -> String? {
                guard let column = index[name], column < fields.count else { return nil }
                let text = fields[column].trimmingCharacters(in: .whitespaces)
                return text.isEmpty ? nil : text
            }
            if fields.count != names.count {
                check.add(prefix, "has \(fields.count) fields; the header has \(names.count)")
                continue
            }
            let kind = value("kind").flatMap(MovementKind.init(rawValue:))
            if kind == nil {
                check.add(prefix + ".kind", "must be one of \(MovementKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let time = value("event_time").flatMap(Instant.parse)
            if time == nil { check.add(prefix + ".event_time", "must be an RFC 3339 instant such as 2026-11-20T07:45:00+01:00") }
            func side(_ party: String, _ site: String) -> PartyAtSite? {
                guard let reference = value(party) else {
                    if value(site) != nil { check.add("\(prefix).\(party)", "is required when \(site) is given") }
                    return nil
                }
                guard let member = directory.member(reference) else {
                    check.add("\(prefix).\(party)", "\"\(reference)\" is not a member id or PGLN of this ecosystem")
                    return nil
                }
                var siteID: UUID?
                if let siteReference = value(site) {
                    if let found = directory.site(siteReference) { siteID = found.id } else {
                        check.add("\(prefix).\(site)", "\"\(siteReference)\" is not a site id or SGLN of this ecosystem")
                    }
                }
                return PartyAtSite(party: member.id, site: siteID)
            }
            let from = side("from_party", "from_site")
            let to = side("to_party", "to_site")
            let type = value("pallet_type").flatMap(directory.palletType)
            if type == nil { check.add(prefix + ".pallet_type", "is not a pallet type id or code of this ecosystem") }
            func quality(_ name: String) -> QualityGrade? {
                guard let text = value(name) else { return nil }
                guard let grade = QualityGrade(rawValue: text) else {
                    check.add("\(prefix).\(name)", "must be one of new, A, B, C, unusable")
                    return nil
                }
                return grade
            }
            func integer(_ name: String, default fallback: Int64?) -> Int64? {
                guard let text = value(name) else {
                    if fallback == nil { check.add("\(prefix).\(name)", "is required") }
                    return fallback
                }
                guard let number = Int64(text) else {
                    check.add("\(prefix).\(name)", "must be a whole number, got \"\(text)\"")
                    return nil
                }
                return number
            }
            let lineQuality = quality("quality") ?? .a
            let quantity = integer("quantity", default: nil)
            let exchanged = integer("exchanged_quantity", default: 0)
            let exchangedQuality = quality("exchanged_quality")
            let target = quality("target_quality")
            guard let kind, let time, let type, let quantity, let exchanged else { continue }
            let line = MovementLine(palletType: type.id, quality: lineQuality, quantity: quantity, exchangedQuantity: exchanged,
                                    exchangedQuality: exchangedQuality, targetQuality: target)
            if let reference = value("movement_ref"), let existing = byReference[reference] {
                let first = declarations[existing]
                if first.kind != kind || first.eventTime != time || first.from != from || first.to != to {
                    check.add(prefix, "has movement_ref \"\(reference)\" but another kind, time or party than row \(rowNumbers[existing][0])")
                    continue
                }
                declarations[existing].lines.append(line)
                rowNumbers[existing].append(rowNumber)
                continue
            }
            let declaration = MovementDeclaration(
                kind: kind, eventTime: time, from: from, to: to, lines: [line],
                references: MovementReferences(deliveryNote: value("delivery_note"), cmr: value("cmr"), order: value("order"),
                                               palletNote: value("pallet_note")),
                note: value("note"))
            if let reference = value("movement_ref") { byReference[reference] = declarations.count }
            declarations.append(declaration)
            rowNumbers.append([rowNumber])
        }
        if table.count < 2 { check.add("body", "holds a header but no movement row") }
        guard check.errors.isEmpty else { return (nil, check.errors) }
        return (Parsed(declarations: declarations, rows: rowNumbers), [])
    }

    /// Rows for export, in `columns` order.
    public static func rows(movementReference: String, _ declaration: MovementDeclaration, directory: Directory) -> [[String]] {
        declaration.lines.map { line in
            [
                movementReference, declaration.kind.rawValue, declaration.eventTime.description,
                declaration.from.map { $0.party.uuidString.lowercased() } ?? "",
                declaration.from?.site.map { $0.uuidString.lowercased() } ?? "",
                declaration.to.map { $0.party.uuidString.lowercased() } ?? "",
                declaration.to?.site.map { $0.uuidString.lowercased() } ?? "",
                directory.palletTypes[line.palletType]?.code ?? line.palletType.uuidString.lowercased(),
                line.quality.rawValue, String(line.quantity), String(line.exchangedQuantity), line.exchangedQuality.rawValue,
                line.targetQuality?.rawValue ?? "", declaration.references.deliveryNote ?? "", declaration.references.cmr ?? "",
                declaration.references.order ?? "", declaration.references.palletNote ?? "", declaration.note ?? "",
            ]
        }
    }
}
