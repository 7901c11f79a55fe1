import Foundation
import PalletFlowCore
import Synchronization

/// Authenticated tokens, kept in this process for a short while so that a request costs no
/// lookup round trip to PostgreSQL (docs/performance.md). Only successful lookups are kept.
///
/// Revocation: a token revoked, rotated or whose member is deactivated through this
/// process's `Store` is dropped at once, and a lookup that was already in flight when that
/// happened does not put it back (a generation counter). A revocation made by another
/// process (the CLI, another daemon) takes effect here within `lifetime`.
public final class TokenCache: Sendable {
    public let lifetime: Duration
    /// Beyond this many live tokens the cache starts over (a bound on memory).
    public let capacity: Int

    private struct Entry {
        var caller: Caller
        var loadedAt: ContinuousClock.Instant
    }

    private struct State {
        var entries: [[UInt8]: Entry] = [:]
        var generation: UInt64 = 0
    }

    private let state = Mutex(State())

    /// `lifetime` zero disables the cache: every request looks its token up.
    public init(lifetime: Duration = .seconds(5), capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    var isEnabled: Bool { lifetime > .zero }

    /// The cached caller for this token digest, if loaded less than `lifetime` ago, and the
    /// generation to hand back to `put` after a database lookup.
    func get(_ hash: [UInt8]) -> (caller: Caller?, generation: UInt64) {
        let now = ContinuousClock.now
        return state.withLock { state in
            if let entry = state.entries[hash], now - entry.loadedAt < lifetime {
                return (entry.caller, state.generation)
            }
            return (nil, state.generation)
        }
    }

    /// Keeps a caller found in the database, unless something was revoked since the lookup began.
    func put(_ hash: [UInt8], _ caller: Caller, lookedUpAt generation: UInt64) {
        guard isEnabled else { return }
        let now = ContinuousClock.now
        state.withLock { state in
            guard state.generation == generation else { return }
            if state.entries.count >= capacity {
                state.entries = state.entries.filter { now - $0.value.loadedAt < lifetime }
                if state.entries.count >= capacity { state.entries.removeAll() }
            }
            state.entries[hash] = Entry(caller: caller, loadedAt: now)
        }
    }

    /// Drops the callers matching `predicate` and fences off lookups in flight.
    func invalidate(where predicate: (Caller) -> Bool) {
        state.withLock { state in
            state.generation &+= 1
            state.entries = state.entries.filter { !predicate($0.value.caller) }
        }
    }
}
