import Foundation
import Logging
import PalletFlowStore
import PostgresNIO
import ServiceLifecycle

/// The worker's main loop as a lifecycle service. It checks that the database is there and
/// migrated, then waits for work until asked to stop; on SIGTERM it returns at once since
/// it holds no job yet. Job kinds land here as the indicators capability grows.
public struct WorkerService: Service {
    let store: Store
    let pollInterval: Duration

    public init(store: Store, pollInterval: Duration = .seconds(5)) {
        self.store = store
        self.pollInterval = pollInterval
    }

    public func run() async throws {
        let logger = store.logger
        guard try await Migrator().isUpToDate(store.client, logger: logger) else {
            logger.error("the database schema is not up to date; run `palletflow migrate` or start palletflowd first")
            throw WorkerError.schemaNotReady
        }
        logger.info("worker ready")
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(for: pollInterval)
        }
        logger.info("worker stopping")
    }
}

public enum WorkerError: Error, CustomStringConvertible {
    case schemaNotReady

    public var description: String {
        switch self {
        case .schemaNotReady: "the database schema is not up to date; run `palletflow migrate` first"
        }
    }
}
