import Foundation
import Synchronization

/// Where every business "now" and "today" comes from: a declaration's record time and
/// its back-dating window, a note's due date and whether it is overdue, an invitation's
/// expiry, the worker's month to close, the indicators' ages. It is injected (the store
/// carries it), never read from the system or from PostgreSQL's `now()` inside a rule, so
/// that a test states its own "now" and the suites can run at any date: `scripts/test`
/// runs the date-sensitive suites again with the clock shifted by +45 and +400 days.
public struct WallClock: Sendable {
    private let reading: @Sendable () -> Instant

    public init(_ reading: @escaping @Sendable () -> Instant) {
        self.reading = reading
    }

    /// The machine's clock.
    public static let system = WallClock { Instant(Date()) }

    /// The machine's clock moved by `seconds` (positive: later). For rehearsals and tests
    /// that run the product at another date (`PALLETFLOW_CLOCK_OFFSET_SECONDS`).
    public static func shifted(bySeconds seconds: Int64) -> WallClock {
        seconds == 0 ? .system : WallClock {
            Instant(microsecondsSinceEpoch: Instant(Date()).microsecondsSinceEpoch + seconds * 1_000_000)
        }
    }

    /// Always the same instant.
    public static func fixed(_ instant: Instant) -> WallClock {
        WallClock { instant }
    }

    /// The current instant, in UTC.
    public func now() -> Instant { reading() }

    /// Today as days since 1970-01-01, in UTC.
    public var today: Int { now().day }

    /// The current instant as a `Date`, for APIs that take one.
    public var date: Date { now().date }
}

/// A clock a test sets and moves by hand; `clock` reads it.
public final class ManualClock: Sendable {
    private let current: Mutex<Instant>

    public init(_ start: Instant) {
        current = Mutex(start)
    }

    public var clock: WallClock {
        WallClock { [self] in self.now() }
    }

    public func now() -> Instant { current.withLock { $0 } }

    public func set(_ instant: Instant) {
        current.withLock { $0 = instant }
    }

    public func advance(seconds: Int64) {
        current.withLock { $0 = Instant(microsecondsSinceEpoch: $0.microsecondsSinceEpoch + seconds * 1_000_000) }
    }

    public func advance(days: Int) {
        advance(seconds: Int64(days) * 86_400)
    }
}

extension WallClock {
    /// The environment variable that shifts the clock of palletflowd, palletflow-worker and
    /// palletflow, in seconds (`scripts/test` runs the suites at +45 and +400 days with it).
    public static let offsetVariable = "PALLETFLOW_CLOCK_OFFSET_SECONDS"

    /// The system clock, shifted when `PALLETFLOW_CLOCK_OFFSET_SECONDS` says so.
    public static func configured(environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> (clock: WallClock, offsetSeconds: Int64)
    {
        guard let text = environment[offsetVariable], !text.isEmpty else { return (.system, 0) }
        guard let seconds = Int64(text.trimmingCharacters(in: .whitespaces)),
              abs(seconds) <= 100 * 366 * 86_400 else {
            throw WallClockSettingError(text: text)
        }
        return (.shifted(bySeconds: seconds), seconds)
    }
}

/// `PALLETFLOW_CLOCK_OFFSET_SECONDS` is not a whole number of seconds.
public struct WallClockSettingError: Error, CustomStringConvertible {
    public var text: String
    public var description: String {
        "\(WallClock.offsetVariable)=\(text) is not a whole number of seconds within a century (e.g. 3888000 for +45 days); unset it to run on the system clock"
    }
}
