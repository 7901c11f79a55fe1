import ArgumentParser
import Foundation
import Logging
import PalletFlowCore
import PalletFlowStore
import PalletFlowWorker
import ServiceLifecycle

@main
struct PalletflowWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "palletflow-worker",
        abstract: "PalletFlow's background worker.",
        discussion: """
            Works on DATABASE_URL, or on the embedded PostgreSQL under --data-dir: the daemon's \
            cluster when it runs, started by the worker itself otherwise. Connects as the application \
            role (the embedded cluster's, or DATABASE_URL's: `palletflow database roles`). Stops on \
            SIGTERM or SIGINT.
            """,
        version: "\(Release.version) (schema \(Migration.all.count))")

    @Option(name: .customLong("data-dir"), help: "Data directory of the embedded PostgreSQL (env PALLETFLOW_DATA_DIR).")
    var dataDirectory: String = ProcessInfo.processInfo.environment["PALLETFLOW_DATA_DIR"] ?? DatabaseRuntime.defaultDataDirectory

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (env PALLETFLOW_LOG_LEVEL).")
    var logLevel: String = ProcessInfo.processInfo.environment["PALLETFLOW_LOG_LEVEL"] ?? "info"

    @Option(name: .customLong("log-format"), help: "json or text (env PALLETFLOW_LOG_FORMAT).")
    var logFormat: String = ProcessInfo.processInfo.environment["PALLETFLOW_LOG_FORMAT"] ?? "json"

    @Option(name: .customLong("job-lease-seconds"),
            help: "How long a claimed job stays this worker's without a sign of life; a job whose worker died is taken again after it (env PALLETFLOW_JOB_LEASE_SECONDS).")
    var jobLeaseSeconds: Int = Int(ProcessInfo.processInfo.environment["PALLETFLOW_JOB_LEASE_SECONDS"] ?? "") ?? 60

    @Flag(name: .customLong("webhooks-allow-private-addresses"),
          help: "Let webhook deliveries reach loopback, private (RFC 1918, fc00::/7), link-local and shared (100.64.0.0/10) addresses, for a private deployment whose receivers sit on its own network (env PALLETFLOW_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES=true).")
    var webhooksAllowPrivateAddresses = false

    func validate() throws {
        guard jobLeaseSeconds >= 1 else { throw ValidationError("--job-lease-seconds must be at least 1") }
    }

    func run() async throws {
        JSONLogHandler.bootstrap(level: Logger.Level(rawValue: logLevel) ?? .info, format: logFormat)
        let logger = Logger(label: "palletflow-worker")
        let runtime: DatabaseRuntime
        do {
            runtime = try await DatabaseRuntime.open(
                dataDirectory: dataDirectory, databaseURL: ProcessInfo.processInfo.environment["DATABASE_URL"],
                logger: logger, maximumConnections: 4)
        } catch let error as EmbeddedPostgresError {
            throw ValidationError(error.description)
        }
        defer { runtime.close() }
        let client = runtime.makeDatabaseClient(logger: logger)
        let clock: WallClock
        do {
            let configured = try WallClock.configured()
            clock = configured.clock
            if configured.offsetSeconds != 0 {
                logger.warning("the business clock is shifted from the system's", metadata: ["offset_seconds": "\(configured.offsetSeconds)"])
            }
        } catch let error as WallClockSettingError {
            throw ValidationError(error.description)
        }
        let webhookRule = WebhookAddressRule.configured(flag: webhooksAllowPrivateAddresses)
        if webhookRule.allowPrivateAddresses {
            logger.warning("webhooks may reach loopback, private, link-local and shared addresses (--webhooks-allow-private-addresses)")
        }
        let worker = WorkerService(store: Store(database: client, logger: logger, clock: clock), lease: .seconds(jobLeaseSeconds),
                                   webhookRule: webhookRule, roleCheck: true)
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: client),
                    .init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup,
                          failureTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}
