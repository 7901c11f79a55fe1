import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension UUID {
    /// Parses the canonical 36-character form (8-4-4-4-12 hex digits, either case), like
    /// `UUID(parsing:)`, without the C library's `sscanf` that Foundation uses on Linux:
    /// a batch of 1,000 declarations parses about 4,000 ids, and `sscanf` was a visible
    /// part of the daemon's profile (docs/performance.md).
    public init?(parsing text: String) {
        var text = text
        let parsed: uuid_t? = text.withUTF8 { utf8 -> uuid_t? in
            guard utf8.count == 36 else { return nil }
            var bytes = [UInt8](repeating: 0, count: 16)
            var index = 0
            var position = 0
            while position < 36 {
                if position == 8 || position == 13 || position == 18 || position == 23 {
                    guard utf8[position] == UInt8(ascii: "-") else { return nil }
                    position += 1
                    continue
                }
                guard let high = Self.hexValue(utf8[position]), let low = Self.hexValue(utf8[position + 1]) else { return nil }
                bytes[index] = high << 4 | low
                index += 1
                position += 2
            }
            return (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                    bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15])
        }
        guard let parsed else { return nil }
        self.init(uuid: parsed)
    }

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Random bytes from the kernel's CSPRNG, fetched 4 KiB at a time: `UUID()` asks the
/// kernel for every id, and a batch of 1,000 declarations makes 1,000 ids (8% of the
/// daemon's CPU in the batch profile went to those system calls).
public enum RandomPool {
    private static let pool = Mutex(Buffer())

    private struct Buffer: ~Copyable {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var used = 4096
    }

    /// `count` (at most 4,096) random bytes.
    public static func bytes(_ count: Int) -> [UInt8] {
        precondition(count <= 4096)
        return pool.withLock { buffer in
            if buffer.used + count > buffer.bytes.count {
                buffer.bytes.withUnsafeMutableBytes { raw in
                    #if canImport(Glibc)
                    // glibc's arc4random_buf reads the kernel's getrandom.
                    arc4random_buf(raw.baseAddress!, raw.count)
                    #else
                    var generator = SystemRandomNumberGenerator()
                    for offset in stride(from: 0, to: raw.count, by: 8) {
                        raw.storeBytes(of: generator.next(), toByteOffset: offset, as: UInt64.self)
                    }
                    #endif
                }
                buffer.used = 0
            }
            defer { buffer.used += count }
            return Array(buffer.bytes[buffer.used..<buffer.used + count])
        }
    }
}
