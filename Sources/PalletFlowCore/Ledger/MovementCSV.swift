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
        let headerErrors = checkHeader(names)
        guard headerErrors.isEmpty else { return (nil, headerErrors) }

        var reading = TableReading(names: names, directory: directory)
        for (offset, fields) in table.dropFirst().enumerated() {
            reading.read(Row(fields: fields, index: reading.index, number: offset + 2))
        }
        if table.count < 2 { reading.check.add("body", "holds a header but no movement row") }
        guard reading.check.errors.isEmpty else { return (nil, reading.check.errors) }
        return (Parsed(declarations: reading.declarations, rows: reading.rowNumbers), [])
    }

    /// A header with an unknown or a missing column is refused before any row is read:
    /// the rows would be read in the wrong columns.
    static func checkHeader(_ names: [String]) -> [FieldError] {
        var check = Validator()
        for name in names where !columns.contains(name) {
            check.add("header", "unknown column \"\(name)\"; the columns are \(columns.joined(separator: ", "))")
        }
        for name in required where !names.contains(name) { check.add("header", "the column \"\(name)\" is required") }
        return check.errors
    }

    /// One CSV row, its values found by column name.
    struct Row {
        let fields: [String]
        let index: [String: Int]
        /// 1 is the header.
        let number: Int

        var prefix: String { "row[\(number)]" }

        /// A blank cell reads as an absent value.
        func value(_ name: String) -> String? {
            guard let column = index[name], column < fields.count else { return nil }
            let text = fields[column].trimmingCharacters(in: .whitespaces)
            return text.isEmpty ? nil : text
        }
    }

    /// The rows read so far: every row's errors, so one answer lists them all, and the
    /// movements formed by `movement_ref`.
    struct TableReading {
        let names: [String]
        let index: [String: Int]
        let directory: Directory
        var check = Validator()
        var declarations: [MovementDeclaration] = []
        var rowNumbers: [[Int]] = []
        var byReference: [String: Int] = [:]

        init(names: [String], directory: Directory) {
            self.names = names
            self.index = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
            self.directory = directory
        }

        mutating func read(_ row: Row) {
            if row.fields.count != names.count {
                check.add(row.prefix, "has \(row.fields.count) fields; the header has \(names.count)")
                return
            }
            let kind = row.value("kind").flatMap(MovementKind.init(rawValue:))
            if kind == nil {
                check.add(row.prefix + ".kind", "must be one of \(MovementKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let time = row.value("event_time").flatMap(Instant.parse)
            if time == nil { check.add(row.prefix + ".event_time", "must be an RFC 3339 instant such as 2026-11-20T07:45:00+01:00") }
            let from = side(of: row, "from_party", "from_site")
            let to = side(of: row, "to_party", "to_site")
            let line = readLine(row)
            guard let kind, let time, let line else { return }
            gather(MovementDeclaration(
                kind: kind, eventTime: time, from: from, to: to, lines: [line],
                references: MovementReferences(deliveryNote: row.value("delivery_note"), cmr: row.value("cmr"),
                                               order: row.value("order"), palletNote: row.value("pallet_note")),
                note: row.value("note")), from: row)
        }

        /// Parties by member id or PGLN, sites by id or SGLN: what a TMS export carries.
        mutating func side(of row: Row, _ party: String, _ site: String) -> PartyAtSite? {
            guard let reference = row.value(party) else {
                if row.value(site) != nil { check.add("\(row.prefix).\(party)", "is required when \(site) is given") }
                return nil
            }
            guard let member = directory.member(reference) else {
                check.add("\(row.prefix).\(party)", "\"\(reference)\" is not a member id or PGLN of this ecosystem")
                return nil
            }
            var siteID: UUID?
            if let siteReference = row.value(site) {
                if let found = directory.site(siteReference) { siteID = found.id } else {
                    check.add("\(row.prefix).\(site)", "\"\(siteReference)\" is not a site id or SGLN of this ecosystem")
                }
            }
            return PartyAtSite(party: member.id, site: siteID)
        }

        /// The row's pallet line; quality A and no exchange when the cells are blank.
        mutating func readLine(_ row: Row) -> MovementLine? {
            let type = row.value("pallet_type").flatMap { directory.palletType($0) }
            if type == nil { check.add(row.prefix + ".pallet_type", "is not a pallet type id or code of this ecosystem") }
            let lineQuality = quality(of: row, "quality") ?? .a
            let quantity = integer(of: row, "quantity", default: nil)
            let exchanged = integer(of: row, "exchanged_quantity", default: 0)
            let exchangedQuality = quality(of: row, "exchanged_quality")
            let target = quality(of: row, "target_quality")
            guard let type, let quantity, let exchanged else { return nil }
            return MovementLine(palletType: type.id, quality: lineQuality, quantity: quantity, exchangedQuantity: exchanged,
                                exchangedQuality: exchangedQuality, targetQuality: target)
        }

        mutating func quality(of row: Row, _ name: String) -> QualityGrade? {
            guard let text = row.value(name) else { return nil }
            guard let grade = QualityGrade(rawValue: text) else {
                check.add("\(row.prefix).\(name)", "must be one of new, A, B, C, unusable")
                return nil
            }
            return grade
        }

        /// A blank cell takes `fallback`; without one, the column must be filled.
        mutating func integer(of row: Row, _ name: String, default fallback: Int64?) -> Int64? {
            guard let text = row.value(name) else {
                if fallback == nil { check.add("\(row.prefix).\(name)", "is required") }
                return fallback
            }
            guard let number = Int64(text) else {
                check.add("\(row.prefix).\(name)", "must be a whole number, got \"\(text)\"")
                return nil
            }
            return number
        }

        /// Rows sharing a `movement_ref` are the lines of one movement, so they must agree on
        /// its kind, time and parties; the first row's references and note stand for all.
        mutating func gather(_ declaration: MovementDeclaration, from row: Row) {
            let reference = row.value("movement_ref")
            if let reference, let existing = byReference[reference] {
                let first = declarations[existing]
                if first.kind != declaration.kind || first.eventTime != declaration.eventTime
                    || first.from != declaration.from || first.to != declaration.to {
                    check.add(row.prefix, "has movement_ref \"\(reference)\" but another kind, time or party than row \(rowNumbers[existing][0])")
                    return
                }
                declarations[existing].lines.append(contentsOf: declaration.lines)
                rowNumbers[existing].append(row.number)
                return
            }
            if let reference { byReference[reference] = declarations.count }
            declarations.append(declaration)
            rowNumbers.append([row.number])
        }
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
