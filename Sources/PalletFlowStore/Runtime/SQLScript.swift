import Foundation

/// Splits a SQL script into statements at top-level semicolons, leaving semicolons inside
/// quotes, dollar-quoted bodies and comments alone. PostgreSQL's extended protocol takes
/// one statement at a time, so migrations run statement by statement in one transaction.
public enum SQLScript {
    public static func statements(_ script: String) -> [String] {
        let characters = Array(script.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var index = 0
        func peek(_ offset: Int) -> Unicode.Scalar? {
            index + offset < characters.count ? characters[index + offset] : nil
        }
        while index < characters.count {
            let character = characters[index]
            if character == "-", peek(1) == "-" {
                while index < characters.count, characters[index] != "\n" { index += 1 }
                continue
            }
            if character == "/", peek(1) == "*" {
                var depth = 0
                repeat {
                    if characters[index] == "/", peek(1) == "*" { depth += 1; index += 2; continue }
                    if characters[index] == "*", peek(1) == "/" { depth -= 1; index += 2; continue }
                    index += 1
                } while depth > 0 && index < characters.count
                current.append(" ")
                continue
            }
            if character == "'" || character == "\"" {
                current.append(character)
                index += 1
                while index < characters.count {
                    current.append(characters[index])
                    if characters[index] == character {
                        if peek(1) == character {
                            current.append(character)
                            index += 2
                            continue
                        }
                        index += 1
                        break
                    }
                    index += 1
                }
                continue
            }
            if character == "$" {
                // A dollar-quote tag: $$ or $name$.
                var end = index + 1
                while end < characters.count,
                      characters[end] == "_" || characters[end].properties.isAlphabetic || ("0"..."9").contains(characters[end]) {
                    end += 1
                }
                if end < characters.count, characters[end] == "$" {
                    let tag = Array(characters[index...end])
                    current.unicodeScalars.append(contentsOf: tag)
                    index = end + 1
                    while index < characters.count {
                        if characters[index] == "$", index + tag.count <= characters.count,
                           Array(characters[index..<index + tag.count]) == tag {
                            current.unicodeScalars.append(contentsOf: tag)
                            index += tag.count
                            break
                        }
                        current.append(characters[index])
                        index += 1
                    }
                    continue
                }
            }
            if character == ";" {
                let statement = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
                if !statement.isEmpty { statements.append(statement) }
                current = String.UnicodeScalarView()
                index += 1
                continue
            }
            current.append(character)
            index += 1
        }
        let statement = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
        if !statement.isEmpty { statements.append(statement) }
        return statements
    }
}

extension String.UnicodeScalarView {
    fileprivate var unicodeScalars: String.UnicodeScalarView {
        get { self }
        set { self = newValue }
    }
}
