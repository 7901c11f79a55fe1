import PalletFlowCore
import Testing

@Suite("Webhook addresses: what a webhook may reach")
struct WebhookAddressTests {
    @Test("canonical IPv4 and IPv6 text is read; other notations of the same addresses are not")
    func parsing() {
        #expect(IPAddress("127.0.0.1")?.bytes == [127, 0, 0, 1])
        #expect(IPAddress("0.0.0.0")?.bytes == [0, 0, 0, 0])
        #expect(IPAddress("::1")?.bytes == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(IPAddress("::ffff:127.0.0.1")?.bytes == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1])
        #expect(IPAddress("2001:db8:0:0:0:0:0:1")?.bytes == [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(IPAddress("fe80::")?.bytes == [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        for odd in ["2130706433", "0x7f000001", "0x7f.1", "127.1", "0177.0.0.1", "127.0.0.01", "127.000.0.1", "256.0.0.1",
                    "1.2.3.4.5", "1.2.3.", " 1.2.3.4", "1.2.3.4 ", "+1.2.3.4", "1.2.3.-4",
                    "1::2::3", ":::1", ":1::", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1.2.3.4::", "::ffff:127.1",
                    "fe80::1%eth0", "[::1]", "::g", "", "localhost"] {
            #expect(IPAddress(odd) == nil, "\(odd) must not read as an address")
        }
    }

    @Test("addresses are written back canonically (RFC 5952 for IPv6)")
    func writing() {
        #expect(IPAddress("10.0.0.1")?.description == "10.0.0.1")
        #expect(IPAddress("2001:0DB8:0000:0000:0000:0000:0000:0001")?.description == "2001:db8::1")
        #expect(IPAddress("1:0:0:1:0:0:0:1")?.description == "1:0:0:1::1")
        #expect(IPAddress("1:0:2:3:4:5:6:7")?.description == "1:0:2:3:4:5:6:7")
        #expect(IPAddress("::")?.description == "::")
        #expect(IPAddress("::ffff:127.0.0.1")?.description == "::ffff:7f00:1")
    }

    @Test("every address falls in its range, IPv4 carried in IPv6 in the range of the IPv4 address")
    func ranges() {
        let expected: [(String, AddressRange)] = [
            ("127.0.0.1", .loopback), ("127.255.255.254", .loopback),
            ("10.0.0.0", .privateUse), ("10.255.255.255", .privateUse),
            ("172.16.0.1", .privateUse), ("172.31.255.255", .privateUse), ("172.15.255.255", .global), ("172.32.0.1", .global),
            ("192.168.1.1", .privateUse), ("192.169.0.1", .global), ("192.167.255.255", .global),
            ("169.254.169.254", .linkLocal), ("169.253.0.1", .global),
            ("100.64.0.1", .sharedAddressSpace), ("100.127.255.255", .sharedAddressSpace),
            ("100.63.255.255", .global), ("100.128.0.0", .global),
            ("224.0.0.1", .multicast), ("239.255.255.250", .multicast), ("240.0.0.1", .global),
            ("0.0.0.0", .unspecified), ("0.1.2.3", .thisNetwork), ("0.255.255.255", .thisNetwork),
            ("255.255.255.255", .broadcast),
            ("8.8.8.8", .global), ("93.184.216.34", .global), ("1.1.1.1", .global),
            ("::1", .loopback), ("::", .unspecified),
            ("fc00::1", .privateUse), ("fd12:3456:789a::1", .privateUse), ("fec0::1", .privateUse),
            ("fe80::1", .linkLocal), ("febf:ffff::1", .linkLocal),
            ("ff02::1", .multicast), ("ff0e::101", .multicast),
            ("::ffff:127.0.0.1", .loopback), ("::ffff:7f00:1", .loopback), ("::ffff:10.1.2.3", .privateUse),
            ("::ffff:172.20.0.1", .privateUse), ("::ffff:192.168.0.1", .privateUse), ("::ffff:169.254.169.254", .linkLocal),
            ("::ffff:100.64.0.1", .sharedAddressSpace), ("::ffff:224.0.0.1", .multicast), ("::ffff:0.0.0.0", .unspecified),
            ("::ffff:0.1.2.3", .thisNetwork), ("::ffff:8.8.8.8", .global),
            ("::127.0.0.1", .loopback), ("64:ff9b::10.0.0.1", .privateUse), ("64:ff9b::8.8.8.8", .global),
            ("2001:4860:4860::8888", .global), ("2606:4700:4700::1111", .global), ("2001:db8::1", .global),
        ]
        for (text, range) in expected {
            #expect(IPAddress(text)?.range == range, "\(text)")
        }
    }

    @Test("the rule refuses every inside range; allowing private addresses still refuses multicast, broadcast and 0.0.0.0/8")
    func rule() throws {
        let strict = WebhookAddressRule()
        let open = WebhookAddressRule(allowPrivateAddresses: true)
        let refusedByDefault: [(String, AddressRange)] = [
            ("127.0.0.1", .loopback), ("::1", .loopback), ("10.0.0.1", .privateUse), ("fd00::1", .privateUse),
            ("169.254.169.254", .linkLocal), ("fe80::1", .linkLocal), ("100.64.0.1", .sharedAddressSpace),
            ("224.0.0.1", .multicast), ("ff02::1", .multicast), ("0.0.0.0", .unspecified), ("::", .unspecified),
            ("0.1.2.3", .thisNetwork), ("255.255.255.255", .broadcast), ("::ffff:127.0.0.1", .loopback),
        ]
        for (text, range) in refusedByDefault {
            #expect(strict.refusal(try #require(IPAddress(text))) == range, "\(text)")
        }
        for text in ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            #expect(strict.refusal(try #require(IPAddress(text))) == nil, "\(text)")
        }
        for text in ["127.0.0.1", "::1", "10.0.0.1", "192.168.1.1", "fd00::1", "169.254.1.1", "fe80::1", "100.64.0.1",
                     "::ffff:127.0.0.1", "8.8.8.8"] {
            #expect(open.refusal(try #require(IPAddress(text))) == nil, "\(text)")
        }
        let stillRefused: [(String, AddressRange)] = [
            ("224.0.0.1", .multicast), ("ff02::1", .multicast), ("255.255.255.255", .broadcast),
            ("0.0.0.0", .unspecified), ("::", .unspecified), ("0.1.2.3", .thisNetwork), ("::ffff:0.0.0.0", .unspecified),
        ]
        for (text, range) in stillRefused {
            #expect(open.refusal(try #require(IPAddress(text))) == range, "\(text)")
        }
    }

    @Test("a webhook URL is read strictly and rebuilt from its parts")
    func urls() throws {
        let plain = try WebhookURL(parsing: "https://hooks.example.com/palletflow?source=pf")
        #expect(plain.scheme == "https")
        #expect(plain.host == .name("hooks.example.com"))
        #expect(plain.port == nil)
        #expect(plain.effectivePort == 443)
        #expect(plain.target == "/palletflow?source=pf")
        #expect(plain.requestURL == "https://hooks.example.com/palletflow?source=pf")

        let upper = try WebhookURL(parsing: "HTTP://Hooks.Example.COM:8443")
        #expect(upper.scheme == "http")
        #expect(upper.host == .name("hooks.example.com"))
        #expect(upper.port == 8443)
        #expect(upper.requestURL == "http://hooks.example.com:8443/")
        #expect(upper.text == "HTTP://Hooks.Example.COM:8443")

        let v6 = try WebhookURL(parsing: "http://[::1]:9000/in")
        #expect(v6.host == .address(try #require(IPAddress("::1"))))
        #expect(v6.requestURL == "http://[::1]:9000/in")

        let v4 = try WebhookURL(parsing: "https://93.184.216.34/h?q=1#fragment")
        #expect(v4.host == .address(try #require(IPAddress("93.184.216.34"))))
        #expect(v4.effectivePort == 443)
        #expect(v4.requestURL == "https://93.184.216.34/h?q=1")

        #expect(try WebhookURL(parsing: "http://example.com?x=1").requestURL == "http://example.com/?x=1")
        #expect(try WebhookURL(parsing: "http://127.0.0.1.nip.io/").host == .name("127.0.0.1.nip.io"))
        #expect(try WebhookURL(parsing: "http://0x7f.example.com:1/").port == 1)
        #expect(try WebhookURL(parsing: "http://xn--bcher-kva.example:65535/").port == 65_535)
    }

    @Test("URLs with another scheme, credentials, odd IPv4 notations or a malformed host or port are refused")
    func refusedURLs() {
        let refused = [
            "ftp://example.com/", "file:///etc/passwd", "gopher://example.com/", "javascript:alert(1)", "example.com/hook",
            "//example.com/hook", "http:/example.com/", "http://user:secret@example.com/", "http://example.com@127.0.0.1/",
            "http://2130706433/", "http://0x7f000001/", "http://0x7f.1/", "http://0177.0.0.1/", "http://127.1/",
            "http://127.0.0.1./", "http://example.com./", "http://[fe80::1%25eth0]/", "http://[127.0.0.1]/", "http://[::1/",
            "http://[::1]x/", "http://[v1.fe]/", "http://exa mple.com/", "http://exämple.com/", "http://example.com:0/",
            "http://example.com:65536/", "http://example.com:/", "http://example.com:80a/", "http://-bad-.example/",
            "http:///path", "http://", "http://example.com\\@127.0.0.1/", "http://example.com/\\x", "http://a..b/",
            "http://%31%32%37.0.0.1/", "http://example.com/\t", "https://" + String(repeating: "a", count: 64) + ".com/",
            "https://example.com/" + String(repeating: "a", count: 2_000),
        ]
        for text in refused {
            #expect(throws: WebhookURL.Invalid.self, "\(text)") { try WebhookURL(parsing: text) }
        }
    }

    @Test("the setting comes from the flag or PALLETFLOW_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES")
    func setting() {
        let variable = "PALLETFLOW_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES"
        #expect(!WebhookAddressRule.configured(flag: false, environment: [:]).allowPrivateAddresses)
        #expect(WebhookAddressRule.configured(flag: true, environment: [:]).allowPrivateAddresses)
        for yes in ["true", "TRUE", "1", "yes"] {
            #expect(WebhookAddressRule.configured(flag: false, environment: [variable: yes]).allowPrivateAddresses, "\(yes)")
        }
        for no in ["", "false", "0", "no", "maybe"] {
            #expect(!WebhookAddressRule.configured(flag: false, environment: [variable: no]).allowPrivateAddresses, "\(no)")
        }
    }

    @Test("a delivery's kept error is refused, timeout or the HTTP status, nothing else")
    func outcomes() {
        #expect(WebhookOutcome.answered(status: 200).error == nil)
        #expect(WebhookOutcome.answered(status: 204).error == nil)
        #expect(WebhookOutcome.answered(status: 302).error == "HTTP 302")
        #expect(WebhookOutcome.answered(status: 500).error == "HTTP 500")
        #expect(WebhookOutcome.refused.error == "refused")
        #expect(WebhookOutcome.timeout.error == "timeout")
        #expect(WebhookOutcome.answered(status: 500).status == 500)
        #expect(WebhookOutcome.refused.status == nil)
        #expect(WebhookOutcome.answered(status: 201).delivered)
        #expect(!WebhookOutcome.answered(status: 302).delivered)
    }
}
