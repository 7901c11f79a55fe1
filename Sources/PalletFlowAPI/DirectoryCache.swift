import Foundation
import PalletFlowCore
import PalletFlowStore
import Synchronization

/// The ecosystem snapshot declarations are checked against, kept for a short while so a
/// declaration costs one database round trip. Writes through this process invalidate it
/// at once; changes made by other processes show here within about `lifetime`.
///
/// Loading a directory takes four queries (members, sites, pallet types, the ecosystem):
/// tens of milliseconds for an ecosystem of 2,000 sites. So that no request waits for it
/// once the cache is warm:
/// - a snapshot older than `lifetime` is still served, while one refresh runs beside the
///   requests (up to `staleLimit`, after which requests wait for a fresh one);
/// - requests that need a load while one is in flight wait for that load instead of
///   starting their own (before, every request of the 2-second expiry window reloaded,
///   took a pooled connection each, and the declarations queued behind them: the
///   periodic stall of docs/performance.md, latency).
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
    let staleLimit: Duration
    private let state = Mutex(State())
    /// Loads started since the cache was made (what the herd test counts).
    let loadsStarted = Atomic<Int>(0)

    init(lifetime: Duration = .seconds(2), staleLimit: Duration = .seconds(30)) {
        self.lifetime = lifetime
        self.staleLimit = staleLimit
    }

    func get(_ ecosystem: UUID, store: Store) async throws -> (Directory, EcosystemRecord) {
        let now = ContinuousClock.now
        enum Next { case serve(Snapshot), wait(Task<Entry, any Error>) }
        let next: Next = state.withLock { state in
            var slot = state.slots[ecosystem] ?? Slot()
            defer { state.slots[ecosystem] = slot }
            let current = slot.load.map { $0.generation == state.generation } ?? false
            if let entry = slot.entry {
                let age = now - entry.loadedAt
                if age < lifetime { return .serve(entry.snapshot) }
                if age < staleLimit {
                    if !current { slot.load = (load(ecosystem, store: store, generation: state.generation), state.generation) }
                    return .serve(entry.snapshot)
                }
            }
            if !current { slot.load = (load(ecosystem, store: store, generation: state.generation), state.generation) }
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
