import Foundation

/// A UTC instant together with the UTC offset the source wrote it with, when it gave one.
/// Movements keep the declarer's offset so a statement can show local dock time.
public struct Instant: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Microseconds since 1970-01-01T00:00:00Z: PostgreSQL's own precision.
    public var microsecondsSinceEpoch: Int64
    /// Offset east of UTC in minutes as written by the source; nil when the source gave none.
    public var offsetMinutes: Int?

    public init(microsecondsSinceEpoch: Int64, offsetMinutes: Int? = nil) {
        self.microsecondsSinceEpoch = microsecondsSinceEpoch
        self.offsetMinutes = offsetMinutes
    }

    public init(_ date: Date, offsetMinutes: Int? = nil) {
        self.microsecondsSinceEpoch = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        self.offsetMinutes = offsetMinutes
    }

    public var date: Date { Date(timeIntervalSince1970: Double(microsecondsSinceEpoch) / 1_000_000) }

    /// RFC 3339 in UTC (`Z`), or in the original offset when one was kept.
    public var description: String { rfc3339(keepingOffset: true) }

    public func rfc3339(keepingOffset: Bool) -> String {
        let offset = keepingOffset ? (offsetMinutes ?? 0) : 0
        let local = microsecondsSinceEpoch + Int64(offset) * 60_000_000
        let (days, microsOfDay) = local.floorDivided(by: 86_400_000_000)
        let (year, month, day) = Instant.civil(fromDays: days)
        let seconds = microsOfDay / 1_000_000
        let micros = microsOfDay % 1_000_000
        // Digits written by hand: String(format:) went through CoreFoundation's formatter,
        // 1% of the daemon's CPU per declaration (docs/performance.md, 'What limits each figure', B1).
        var text = [UInt8]()
        text.reserveCapacity(32)
        if year < 0 { text.append(UInt8(ascii: "-")) }
        Self.append(abs(year), digits: 4, to: &text)
        text.append(UInt8(ascii: "-")); Self.append(month, digits: 2, to: &text)
        text.append(UInt8(ascii: "-")); Self.append(day, digits: 2, to: &text)
        text.append(UInt8(ascii: "T")); Self.append(Int(seconds / 3600), digits: 2, to: &text)
        text.append(UInt8(ascii: ":")); Self.append(Int(seconds / 60 % 60), digits: 2, to: &text)
        text.append(UInt8(ascii: ":")); Self.append(Int(seconds % 60), digits: 2, to: &text)
        if micros != 0 {
            text.append(UInt8(ascii: "."))
            var fraction = Int(micros), digits = 6
            while fraction % 10 == 0 { fraction /= 10; digits -= 1 }
            Self.append(fraction, digits: digits, to: &text)
        }
        if offset == 0 {
            text.append(UInt8(ascii: "Z"))
        } else {
            text.append(UInt8(ascii: offset < 0 ? "-" : "+"))
            Self.append(abs(offset) / 60, digits: 2, to: &text)
            text.append(UInt8(ascii: ":"))
            Self.append(abs(offset) % 60, digits: 2, to: &text)
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// `value` (not negative) in decimal, left-padded with zeros to at least `digits`.
    /// Written in place, without an array per number (this runs for every timestamp rendered).
    private static func append(_ value: Int, digits: Int, to text: inout [UInt8]) {
        var count = 1
        var probe = value
        while probe >= 10 { probe /= 10; count += 1 }
        text.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: max(count, digits)))
        var rest = value
        var index = text.count - 1
        while rest > 0 {
            text[index] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
            index -= 1
        }
    }

    /// Parses an RFC 3339 date-time (`2026-03-01T08:15:00+01:00`, `...Z`, fractions up to
    /// microseconds). Returns nil for anything else, including impossible dates.
    public static func parse(_ text: String) -> Instant? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20 else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 else { return nil }
                value = value * 10 + Int(bytes[index] - 48)
            }
            return value
        }
        guard let year = number(0..<4), bytes[4] == UInt8(ascii: "-"),
              let month = number(5..<7), bytes[7] == UInt8(ascii: "-"),
              let day = number(8..<10), bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t"),
              let hour = number(11..<13), bytes[13] == UInt8(ascii: ":"),
              let minute = number(14..<16), bytes[16] == UInt8(ascii: ":"),
              let second = number(17..<19)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
              hour <= 23, minute <= 59, second <= 59
        else { return nil }
        var index = 19
        var micros: Int64 = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var digits = 0
            while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                if digits < 6 { micros = micros * 10 + Int64(bytes[index] - 48) }
                digits += 1
                index += 1
            }
            guard digits >= 1, digits <= 9 else { return nil }
            for _ in 0..<max(0, 6 - digits) { micros *= 10 }
        }
        guard index < bytes.count else { return nil }
        let offset: Int
        if bytes[index] == UInt8(ascii: "Z") || bytes[index] == UInt8(ascii: "z") {
            guard index + 1 == bytes.count else { return nil }
            offset = 0
        } else if bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            guard index + 6 == bytes.count, let offsetHours = number(index + 1..<index + 3),
                  bytes[index + 3] == UInt8(ascii: ":"), let offsetMinutes = number(index + 4..<index + 6),
                  offsetHours <= 23, offsetMinutes <= 59
            else { return nil }
            offset = (bytes[index] == UInt8(ascii: "-") ? -1 : 1) * (offsetHours * 60 + offsetMinutes)
        } else {
            return nil
        }
        let days = Int64(daysFromCivil(year: year, month: month, day: day))
        let localMicros = ((days * 24 + Int64(hour)) * 60 + Int64(minute)) * 60_000_000
            + Int64(second) * 1_000_000 + micros
        return Instant(microsecondsSinceEpoch: localMicros - Int64(offset) * 60_000_000, offsetMinutes: offset)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Howard Hinnant's days_from_civil: days since 1970-01-01 in the proleptic Gregorian calendar.
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(fromDays days: Int64) -> (Int, Int, Int) {
        let z = Int(days) + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

extension Int64 {
    func floorDivided(by divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        var quotient = self / divisor
        var remainder = self % divisor
        if remainder < 0 {
            quotient -= 1
            remainder += divisor
        }
        return (quotient, remainder)
    }
}
