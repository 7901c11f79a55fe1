import NIOPosix
import PalletFlowCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a webhook URL leads (the I/O half of the rule in `PalletFlowCore/WebhookAddress`,
/// here so that registration in the API and delivery in the worker use the same one): its host resolved once, every address checked against the
/// rule. The sender then connects to `address`, the one checked, and never resolves the
/// name again, so a DNS answer that changes between the check and the connection (DNS
/// rebinding) cannot send it inside.
public enum WebhookDestination: Sendable, Hashable {
    /// Every address is allowed; connect to this one.
    case allowed(IPAddress)
    /// One of the addresses (the first refused) is not allowed: nothing is sent.
    case refused(IPAddress, AddressRange)
    /// The name has no address (or the lookup failed).
    case unresolved

    public static func resolve(_ url: WebhookURL, rule: WebhookAddressRule) async -> WebhookDestination {
        let addresses: [IPAddress]
        switch url.host {
        case .address(let address): addresses = [address]
        case .name(let name): addresses = await HostResolver.addresses(of: name)
        }
        guard let first = addresses.first else { return .unresolved }
        for address in addresses {
            if let range = rule.refusal(address) { return .refused(address, range) }
        }
        return .allowed(first)
    }
}

/// getaddrinfo, on NIO's blocking-I/O thread pool: the lookup blocks, and the daemon's
/// concurrency runs on its event loops, which must not wait on DNS.
enum HostResolver {
    static func addresses(of name: String) async -> [IPAddress] {
        (try? await NIOThreadPool.singleton.runIfActive { lookup(name) }) ?? []
    }

    /// Every address the system's resolver gives for `name`, IPv4 and IPv6, in its order,
    /// without repeats (it lists one per socket type otherwise).
    static func lookup(_ name: String) -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &list) == 0, let list else { return [] }
        defer { freeaddrinfo(list) }
        var result: [IPAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let info = entry?.pointee {
            entry = info.ai_next
            guard let socketAddress = info.ai_addr else { continue }
            var bytes: [UInt8] = []
            switch info.ai_family {
            case AF_INET:
                var address = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                bytes = withUnsafeBytes(of: &address) { Array($0) }
            case AF_INET6:
                var address = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                bytes = withUnsafeBytes(of: &address) { Array($0) }
            default:
                continue
            }
            if let address = IPAddress(bytes: bytes), !result.contains(address) { result.append(address) }
        }
        return result
    }
}
