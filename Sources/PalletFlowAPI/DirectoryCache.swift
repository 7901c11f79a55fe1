import Foundation
import PalletFlowCore
import PalletFlowStore
import Synchronization

/// The ecosystem snapshot declarations are checked against, kept for a short while so a
/// declaration costs one database round trip. Writes through this process invalidate it
/// at once; changes made by other processes show here within about `lifetime`.
///
/// Loading a directory takes four queries (members, sites, pallet types, the ecosystem):
/// tens of milliseconds for an ecosystem of 2,000 sites. Requests that need a load while
/// one is in flight wait for that load instead of starting their own: before, every
/// request of the window after each 2-second expiry reloaded on its own pooled
/// connection, and the declarations queued behind the burst (docs/performance.md,
/// change 9). A snapshot past its lifetime is never used: serving it while a refresh ran
/// was tried, and answered 422 "unknown party" for a member another process had just
/// added, and kept doing so while the database was down instead of answering 503 (the
/// reliability suite's crash-postgres found it).
final class DirectoryCache: Sendable {
    typealias Snapshot = (directory: Directory, ecosystem: EcosystemRecord)

    private struct Entry {
        var snapshot: Snapshot
        var loadedAt: ContinuousClock.Instant
    }

    private struct Slot {
        var entry: Entry?
        /// The load in flight, and the generation it started in.
        var load: (task: Task<Entry, any Error>, generation: UInt64)?
    }

    private struct State {
        var slots: [UUID: Slot] = [:]
        /// Bumped by every invalidation: a load that began before it may have read the old
        /// rows, so it neither serves the requests that come after nor fills the cache.
        var generation: UInt64 = 0
    }

    let lifetime: Duration
    private let state = Mutex(State())
    /// Loads started since the cache was made (what the herd test counts).
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
            if let entry = slot.entry, now - entry.loadedAt < lifetime { return .serve(entry.snapshot) }
            // Join the load in flight if it began after the last invalidation.
            if slot.load.map({ $0.generation != state.generation }) ?? true {
                slot.load = (load(ecosystem, store: store, generation: state.generation), state.generation)
            }
            return .wait(slot.load!.task)
        }
        switch next {
        case .serve(let snapshot): return snapshot
        case .wait(let task): return try await task.value.snapshot
        }
    }

    /// Starts loading; the task files its result in the cache unless an invalidation came
    /// in between, and clears itself from the slot either way.
    private func load(_ ecosystem: UUID, store: Store, generation: UInt64) -> Task<Entry, any Error> {
        loadsStarted.add(1, ordering: .relaxed)
        return Task {
            let started = ContinuousClock.now
            do {
                let directory = try await store.directory(ecosystem: ecosystem)
                guard let record = try await store.ecosystem(ecosystem) else { throw StoreError.notFound("ecosystem") }
                let entry = Entry(snapshot: (directory, record), loadedAt: started)
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
            if slot.load?.generation == generation { slot.load = nil }
            if let entry, generation == state.generation { slot.entry = entry }
            state.slots[ecosystem] = slot
        }
    }

    func invalidate(_ ecosystem: UUID) {
        state.withLock { state in
            state.generation &+= 1
            state.slots[ecosystem]?.entry = nil
        }
    }
}
