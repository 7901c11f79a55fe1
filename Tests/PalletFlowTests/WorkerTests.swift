import Foundation
import Logging
import PalletFlowStore
import PalletFlowWorker
import ServiceLifecycle
import Testing

@Suite("Worker process")
struct WorkerTests {
    @Test("the worker starts on a migrated database and stops cleanly on graceful shutdown")
    func startsAndStops() async throws {
        let settings = try await TestDatabase.shared.freshDatabase()
        let client = DatabaseRuntime(settings: settings, cluster: nil).makeClient(logger: TestDatabase.logger)
        let worker = WorkerService(store: Store(client: client, logger: TestDatabase.logger), pollInterval: .milliseconds(50))
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: client), .init(service: worker)], logger: TestDatabase.logger))
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(300))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test("the worker refuses to run on a database that is not migrated")
    func refusesUnmigrated() async throws {
        let settings = try await TestDatabase.shared.emptyDatabase()
        try await DatabaseRuntime(settings: settings, cluster: nil).withClient(logger: TestDatabase.logger) { client in
            let worker = WorkerService(store: Store(client: client, logger: TestDatabase.logger))
            await #expect(throws: WorkerError.self) { try await worker.run() }
        }
    }
}
