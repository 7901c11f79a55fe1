/// RFC 4180 CSV: comma-separated, double-quoted fields with "" for a quote, CRLF or LF.
public enum CSV {
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var row: Int
        public var message: String
        public var description: String { "row \(row): \(message)" }
    }

    /// Rows of fields. Limits keep a hostile file from exhausting memory.
    public static func parse(_ text: String, maximumRows: Int = 100_001, maximumFieldLength: Int = 10_000) throws -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field = ""
        var inQuotes = false
        var afterQuote = false
        var iterator = text.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar?
        func next() -> Unicode.Scalar? {
            if let scalar = pending { pending = nil; return scalar }
            return iterator.next()
        }
        func endField() throws {
            guard field.count <= maximumFieldLength else {
                throw ParseError(row: rows.count + 1, message: "a field is longer than \(maximumFieldLength) characters")
            }
            row.append(field)
            field = ""
            afterQuote = false
        }
        func endRow() throws {
            try endField()
            if !(row.count == 1 && row[0].isEmpty) { rows.append(row) }
            row = []
            guard rows.count <= maximumRows else {
                throw ParseError(row: rows.count, message: "more than \(maximumRows) rows")
            }
        }
        while let scalar = next() {
            if inQuotes {
                if scalar == "\"" {
                    if let following = next() {
                        if following == "\"" { field.unicodeScalars.append("\"") } else { inQuotes = false; afterQuote = true; pending = following }
                    } else {
                        inQuotes = false
                        afterQuote = true
                    }
                } else {
                    field.unicodeScalars.append(scalar)
                }
                continue
            }
            switch scalar {
            case ",": try endField()
            case "\r":
                if let following = next(), following != "\n" { pending = following }
                try endRow()
            case "\n": try endRow()
            case "\"":
                guard field.isEmpty, !afterQuote else {
                    throw ParseError(row: rows.count + 1, message: "a quote inside an unquoted field")
                }
                inQuotes = true
            default:
                guard !afterQuote else {
                    throw ParseError(row: rows.count + 1, message: "characters after a closing quote")
                }
                field.unicodeScalars.append(scalar)
            }
        }
        if inQuotes { throw ParseError(row: rows.count + 1, message: "a quoted field is not closed") }
        if !field.isEmpty || !row.isEmpty { try endRow() }
        return rows
    }

    public static func escape(_ field: String) -> String {
        if field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return field
    }

    public static func line(_ fields: [String]) -> String {
        fields.map(escape).joined(separator: ",") + "\r\n"
    }
}
