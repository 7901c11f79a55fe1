import Foundation
import PalletFlowCore
import PalletFlowStore
import Synchronization

/// The ecosystem snapshot declarations are checked against, kept for a short while so a
/// declaration costs one database round trip. Writes through this process invalidate it
/// at once; other processes see changes within `lifetime`.
final class DirectoryCache: Sendable {
    struct Entry {
        var directory: Directory
        var ecosystem: EcosystemRecord
        var loadedAt: ContinuousClock.Instant
    }

    let lifetime: Duration
    private let entries = Mutex<[UUID: Entry]>([:])

    init(lifetime: Duration = .seconds(2)) {
        self.lifetime = lifetime
    }

    func get(_ ecosystem: UUID, store: Store) async throws -> (Directory, EcosystemRecord) {
        let now = ContinuousClock.now
        if let entry = entries.withLock({ $0[ecosystem] }), now - entry.loadedAt < lifetime {
            return (entry.directory, entry.ecosystem)
        }
        let directory = try await store.directory(ecosystem: ecosystem)
        guard let record = try await store.ecosystem(ecosystem) else { throw StoreError.notFound("ecosystem") }
        entries.withLock { $0[ecosystem] = Entry(directory: directory, ecosystem: record, loadedAt: now) }
        return (directory, record)
    }

    func invalidate(_ ecosystem: UUID) {
        _ = entries.withLock { $0.removeValue(forKey: ecosystem) }
    }
}
