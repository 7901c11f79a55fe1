import Foundation
import PalletFlowCore
import PalletFlowStore

/// Issues each partner's statement of its account with the shipper for a closed month
/// (relevé de compte), which a partner acknowledges or contests, and its statement after the
/// work (work done, pallets recovered, losses avoided, disputes closed).
public struct MonthlyStatements: Sendable {
    public let store: Store
    public init(store: Store) { self.store = store }

    /// `month` is "YYYY-MM"; returns how many statements were issued now.
    @discardableResult
    public func issue(ecosystem: UUID, month: String) async throws -> Int {
        guard let settings = try await store.indicatorSettings(ecosystem: ecosystem),
              let start = Instant.parse(month + "-01T00:00:00Z")
        else { return 0 }
        let end = PeriodKind.month.end(startingAt: start.day)
        let until = Instant(microsecondsSinceEpoch: Int64(end) * 86_400_000_000)
        var issued = 0
        for partner in try await store.partnersWithAccounts(ecosystem: ecosystem, counterparty: settings.shipper) {
            let statement = try await store.statement(ecosystem: ecosystem, party: partner, counterparty: settings.shipper,
                                                      from: start, until: until)
            if try await store.recordIssuedStatement(ecosystem: ecosystem, statement) { issued += 1 }
        }
        // The statement after the work reads the month's indicators: bring them up to date first.
        try await IndicatorEngine(store: store).update(ecosystem: ecosystem)
        try await store.issueWorkStatements(ecosystem: ecosystem, shipper: settings.shipper, startDay: start.day, endDay: end)
        return issued
    }
}
