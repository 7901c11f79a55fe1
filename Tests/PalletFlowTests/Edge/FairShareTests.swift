import Foundation
import HTTPTypes
import NIOCore
@testable import PalletFlowAPI
import PalletFlowCore
import PalletFlowStore
import Testing

/// One tenant cannot starve the others, nor mint tokens or guess codes without bound.
@Suite("Fair shares between tenants")
struct FairShareTests {
    @Test("a member holds at most the set number of live tokens; revoking one makes room")
    func tokenCap() async throws {
        try await withAPI(configure: { $0.maxTokensPerMember = 3 }) { api, fixture, _ in
            let path = "\(fixture.base)/members/\(fixture.carrier.id.lower)/tokens"
            // The fixture issued one; two more fit.
            var made: [String] = []
            for index in 0..<2 {
                let issued = try await api.post(path, token: fixture.shipper.token, json: ["name": "tms-\(index)"])
                #expect(issued.status == .created, "\(issued.text)")
                made.append(try #require((issued.json["token"] as? [String: Any])?["id"] as? String))
            }
            let refused = try await api.post(path, token: fixture.carrier.token, json: ["name": "one too many"])
            #expect(refused.status == .conflict)
            #expect(refused.text.contains("3 live tokens"))
            #expect(try await api.get(path, token: fixture.shipper.token).items.count == 3)
            #expect(try await api.request(.delete, "\(path)/\(made[0])", token: fixture.shipper.token).status == .noContent)
            #expect(try await api.post(path, token: fixture.carrier.token, json: ["name": "again"]).status == .created)
        }
    }

    @Test("without a valid token no large body is read: a bad token is 401 before it, no token at most 64 KiB")
    func authenticatedBeforeBuffering() async throws {
        try await withAPI { api, fixture, store in
            let big = String(repeating: "x", count: 200 * 1024)
            // A bad token: refused on its header, the 200 KiB body never read.
            let badToken = try await api.request(.post, "\(fixture.base)/members", token: "pft_nothing",
                                                 body: #"{"name":"\#(big)","role":"carrier"}"#)
            #expect(badToken.status == .unauthorized)
            // No token at all: the public door reads 64 KiB at most.
            let anonymous = try await api.request(.post, "/v1/invitations/accept", body: #"{"code":"\#(big)"}"#)
            #expect(anonymous.status == .contentTooLarge, "\(anonymous.text)")
            // A valid token reads up to the body limit (1 MiB here): the body is judged on its content.
            let valid = try await api.request(.post, "\(fixture.base)/members", token: fixture.shipper.token,
                                              body: #"{"name":"\#(big)","role":"carrier"}"#)
            #expect(valid.status == .unprocessableContent || valid.status == .badRequest, "\(valid.status)")
            #expect(try await store.members(ecosystem: fixture.ecosystem).count == 6)
        }
    }

    @Test("sign-ins, invitation codes and unknown tokens are limited per client address; valid tokens are not")
    func publicDoorsLimited() async throws {
        // One attempt every 20 s, in bursts of 1: the second in a row is refused whatever the
        // machine's speed.
        try await withAPI(configure: { $0.rateLimitPerAddress = 0.05 }) { api, fixture, _ in
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<4 {
                statuses.append(try await api.request(.post, "/v1/invitations/accept", json: ["code": "guessed-code"]).status)
            }
            #expect(statuses == [.notFound, .tooManyRequests, .tooManyRequests, .tooManyRequests], "\(statuses)")
            let guessed = try await api.get("/v1/me", token: "pft_guessed")
            #expect(guessed.status == .tooManyRequests)
            #expect(guessed.headers[.retryAfter] != nil)
            // A member's valid token goes on working from the same address.
            #expect(try await api.get("/v1/me", token: fixture.carrier.token).status == .ok)
        }
    }

    @Test("one ecosystem's expensive reads wait for their share; another ecosystem's run at once")
    func heavyReadShare() async throws {
        let gate = HeavyReadGate(perEcosystem: 2, patience: .milliseconds(300))
        let mine = UUID(), theirs = UUID()
        let release = AsyncStream<Void>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            let started = AsyncStream<Void>.makeStream()
            for _ in 0..<2 {
                group.addTask {
                    try await gate.run(mine) {
                        started.continuation.yield()
                        for await _ in release.stream { break }
                    }
                }
            }
            var iterator = started.stream.makeAsyncIterator()
            _ = await iterator.next()
            _ = await iterator.next()
            #expect(gate.count(mine) == 2)
            // A third of the same ecosystem waits its patience, then is refused with 429.
            do {
                _ = try await gate.run(mine) { Issue.record("a third read of one ecosystem ran beside two") }
            } catch let problem as Problem {
                #expect(problem.status == .tooManyRequests)
                #expect(problem.headers[.retryAfter] == "5")
            }
            // Another ecosystem is not held back.
            #expect(try await gate.run(theirs) { gate.count(theirs) } == 1)
            release.continuation.finish()
            try await group.waitForAll()
        }
        #expect(gate.count(mine) == 0)
    }
}
