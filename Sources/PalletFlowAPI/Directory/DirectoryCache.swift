import Foundation
import PalletFlowCore
import PalletFlowStore
import Synchronization

/// The ecosystem snapshot declarations are checked against, kept in memory so a
/// declaration costs one database round trip.
///
/// A copy is trusted for `lifetime`; after that, the next request checks it by reading the
/// ecosystem's row, which carries the version of its directory (sql/0012: every change to
/// its members, sites or pallet types bumps it, whichever process makes it). Only when the
/// version moved are the directory's rows read again: four queries, tens of milliseconds for
/// an ecosystem of 2,000 sites. Reloading every two seconds made every request arriving
/// during the reload wait for it, a stall the 99th percentile saw (docs/performance.md,
/// 'What limits each figure', latency). Writes through this process make the next request
/// check at once.
///
/// Requests that need a check while one is in flight wait for it instead of starting their
/// own (change 9). A copy past its lifetime is never used unchecked: serving it while a
/// refresh ran was tried, and answered 422 "unknown party" for a member another process had
/// just added, and kept doing so while the database was down instead of answering 503 (the
/// reliability suite's crash-postgres found it).
final class DirectoryCache: Sendable {
    typealias Snapshot = (directory: Directory, ecosystem: EcosystemRecord)

    private struct Entry {
        var snapshot: Snapshot
        /// The directory version the rows were read at (read before them, so a change that
        /// commits during the read makes the next check reload).
        var version: Int64
        /// When it was last known current; nil after an invalidation.
        var checkedAt: ContinuousClock.Instant?
    }

    private struct Slot {
        var entry: Entry?
        /// The check in flight, and the generation it started in.
        var check: (task: Task<Entry, any Error>, generation: UInt64)?
    }

    private struct State {
        var slots: [UUID: Slot] = [:]
        /// Bumped by every invalidation: a check that began before it may have read the old
        /// rows, so it neither serves the requests that come after nor fills the cache.
        var generation: UInt64 = 0
    }

    let lifetime: Duration
    private let state = Mutex(State())
    /// Checks started since the cache was made, and how many of them read the directory's
    /// rows (what the tests count).
    let checksStarted = Atomic<Int>(0)
    let loadsStarted = Atomic<Int>(0)

    init(lifetime: Duration = .seconds(2)) {
        self.lifetime = lifetime
    }

    func get(_ ecosystem: UUID, store: Store) async throws -> (Directory, EcosystemRecord) {
        let now = ContinuousClock.now
        enum Next { case serve(Snapshot), wait(Task<Entry, any Error>) }
        let next: Next = state.withLock { state in
            var slot = state.slots[ecosystem] ?? Slot()
            defer { state.slots[ecosystem] = slot }
            if let entry = slot.entry, let checked = entry.checkedAt, now - checked < lifetime {
                return .serve(entry.snapshot)
            }
            // Join the check in flight if it began after the last invalidation.
            if slot.check.map({ $0.generation != state.generation }) ?? true {
                slot.check = (check(ecosystem, against: slot.entry, store: store, generation: state.generation),
                              state.generation)
            }
            return .wait(slot.check!.task)
        }
        switch next {
        case .serve(let snapshot): return snapshot
        case .wait(let task): return try await task.value.snapshot
        }
    }

    /// Starts a check: the ecosystem's row, then the directory's rows only if its version
    /// moved. The task files its result in the cache unless an invalidation came in
    /// between, and clears itself from the slot either way.
    private func check(_ ecosystem: UUID, against current: Entry?, store: Store, generation: UInt64) -> Task<Entry, any Error> {
        checksStarted.add(1, ordering: .relaxed)
        return Task {
            let started = ContinuousClock.now
            do {
                guard let (record, version) = try await store.ecosystemAndDirectoryVersion(ecosystem) else {
                    throw StoreError.notFound("ecosystem")
                }
                let directory: Directory
                if let current, current.version == version {
                    directory = current.snapshot.directory
                } else {
                    loadsStarted.add(1, ordering: .relaxed)
                    directory = try await store.directory(ecosystem: ecosystem)
                }
                let entry = Entry(snapshot: (directory, record), version: version, checkedAt: started)
                finish(ecosystem, generation: generation, entry: entry)
                return entry
            } catch {
                finish(ecosystem, generation: generation, entry: nil)
                throw error
            }
        }
    }

    private func finish(_ ecosystem: UUID, generation: UInt64, entry: Entry?) {
        state.withLock { state in
            guard var slot = state.slots[ecosystem] else { return }
            if slot.check?.generation == generation { slot.check = nil }
            if let entry, generation == state.generation { slot.entry = entry }
            state.slots[ecosystem] = slot
        }
    }

    /// After a write through this process: the next request checks the copy (and, the
    /// write having bumped the version, reads the directory again).
    func invalidate(_ ecosystem: UUID) {
        state.withLock { state in
            state.generation &+= 1
            state.slots[ecosystem]?.entry?.checkedAt = nil
        }
    }
}
