import Foundation
import PalletFlowCore
import PalletFlowEPCIS
import Testing

/// The shared EPCIS fixtures (openepcis test resources, Apache 2.0), copied in Tests/Fixtures.
func epcisFixture(_ path: String) throws -> Data {
    // Tests/Fixtures, whatever the folder of this file.
    let root = URL(fileURLWithPath: #filePath.components(separatedBy: "/Tests/")[0] + "/Tests")
    return try Data(contentsOf: root.appendingPathComponent("Fixtures/epcis/\(path)"))
}

@Suite("GS1 keys and CBV")
struct GS1KeyTests {
    // Check digits below were computed by hand with the GS1 mod-10 rule (weights 3,1
    // from the right), e.g. 4012345.00000 -> 401234500000 -> 9.
    @Test("URN, Digital Link and bare digits of one key are one key")
    func notationsAgree() {
        #expect(GS1Key.graiClass("urn:epc:idpat:grai:4000001.11111.*")?.description == "grai:04000001111114")
        #expect(GS1Key.graiClass("https://id.gs1.org/8003/04000001111114") == GS1Key.graiClass("urn:epc:idpat:grai:4000001.11111.*"))
        // A serialised GRAI names one pallet of the class.
        #expect(GS1Key.graiClass("urn:epc:id:grai:4000001.11111.8765")?.description == "grai:04000001111114")
        #expect(GS1Key.graiClass("https://id.gs1.org/8003/040000011111148765")?.description == "grai:04000001111114")
        #expect(GS1Key.isSerialisedGRAI("https://id.gs1.org/8003/040000011111148765"))
        #expect(!GS1Key.isSerialisedGRAI("https://id.gs1.org/8003/04000001111114"))

        #expect(GS1Key.party("urn:epc:id:pgln:4012345.00000")?.description == "pgln:4012345000009")
        #expect(GS1Key.party("https://id.gs1.org/417/4012345000009") == GS1Key.party("urn:epc:id:pgln:4012345.00000"))
        #expect(GS1Key.party("4012345000009") == GS1Key.party("urn:epc:id:pgln:4012345.00000"))
        // A resolver other than id.gs1.org names the same key.
        #expect(GS1Key.party("https://example.com/gs1/417/4012345000016")?.description == "pgln:4012345000016")

        #expect(GS1Key.location("urn:epc:id:sgln:4012345.20000.0")?.description == "sgln:4012345200003")
        #expect(GS1Key.location("https://id.gs1.org/414/4012345200003") == GS1Key.location("urn:epc:id:sgln:4012345.20000.0"))
        #expect(GS1Key.location("urn:epc:id:sgln:4012345.20000.dock7")?.description == "sgln:4012345200003/254/dock7")
        #expect(GS1Key.location("https://id.gs1.org/414/4012345200003/254/dock7") == GS1Key.location("urn:epc:id:sgln:4012345.20000.dock7"))

        #expect(GS1Key.document("urn:epc:id:gdti:4012345.55555.V42")?.description == "gdti:4012345555554V42")
        #expect(GS1Key.document("https://id.gs1.org/253/4012345555554V42") == GS1Key.document("urn:epc:id:gdti:4012345.55555.V42"))
    }

    @Test("wrong check digits and malformed keys are refused")
    func malformed() {
        #expect(GS1Key.party("https://id.gs1.org/417/4012345000008") == nil)
        #expect(GS1Key.graiClass("https://id.gs1.org/8003/04000001111115") == nil)
        #expect(GS1Key.party("urn:epc:id:pgln:4012345.0000") == nil)
        #expect(GS1Key.location("urn:epc:id:sgln:4012345.20000") == nil)
        #expect(GS1Key.graiClass("urn:epc:idpat:sgtin:4054739.099914.*") == nil)
    }

    @Test("CBV words, CBV URIs and private URIs; bare words outside the CBV are not")
    func vocabulary() {
        #expect(CBV.term("arriving", in: .bizStep) == .word("arriving"))
        #expect(CBV.term("https://ref.gs1.org/cbv/BizStep-arriving", in: .bizStep) == .word("arriving"))
        #expect(CBV.term("urn:epcglobal:cbv:bizstep:departing", in: .bizStep) == .word("departing"))
        #expect(CBV.term("http://epcis.example.org/hc/bizstep/summarising_discharge", in: .bizStep)
            == .uri("http://epcis.example.org/hc/bizstep/summarising_discharge"))
        #expect(CBV.term("transforming", in: .bizStep) == nil)
        #expect(CBV.term("https://ref.gs1.org/cbv/BizStep-returning", in: .bizStep) == nil)
        #expect(CBV.term("returned", in: .disposition) == .word("returned"))
        #expect(CBV.term("lost", in: .disposition) == nil)
    }
}

@Suite("EPCIS documents")
struct EPCISReaderTests {
    @Test("the shared valid fixtures read without error", arguments: [
        "valid/ObjectEvent.json", "valid/ObjectEvent_with_error_declaration.json", "valid/TransactionEvent.json",
        "valid/epcisDocWithAllGS1Keys.json",
    ])
    func validFixtures(_ name: String) throws {
        let reading = EPCISReader.readDocument(try JSONValue.parse(try epcisFixture(name)))
        #expect(reading.errors.isEmpty, "\(reading.allErrors)")
        #expect(reading.events.count == reading.eventCount)
        #expect(reading.eventCount >= 1)
    }

    @Test("the shared invalid fixtures name the event and field", arguments: [
        ("invalid/ObjectEvent_with_invalid_action.json", "epcisBody.eventList[0].action"),
        ("invalid/ObjectEvent_with_non_standard_bizStep.json", "epcisBody.eventList[0].bizStep"),
        ("invalid/ObjectEvent_with_quantity_as_text.json", "epcisBody.eventList[0].quantityList[0].quantity"),
    ])
    func invalidFixtures(_ name: String, _ field: String) throws {
        let reading = EPCISReader.readDocument(try JSONValue.parse(try epcisFixture(name)))
        #expect(reading.allErrors.map(\.field) == [field])
        #expect(reading.events.isEmpty)
    }

    @Test("fields are read as the fixtures give them")
    func fieldsRead() throws {
        let reading = EPCISReader.readDocument(try JSONValue.parse(try epcisFixture("valid/ObjectEvent.json")))
        let first = try #require(reading.events.first)
        #expect(first.bizStep == .word("shipping"))
        #expect(first.disposition == .word("in_transit"))
        #expect(first.eventTimeZoneOffset == "-06:00")
        // 2005-04-03T20:33:31.116-06:00 is 2005-04-04T02:33:31.116Z.
        #expect(first.eventTime.rfc3339(keepingOffset: false) == "2005-04-04T02:33:31.116Z")
        #expect(first.eventTime.offsetMinutes == -360)
        #expect(reading.events[1].json["example:myField"] == .string("Example of a vendor/user extension"))
        #expect(reading.prefixes["example"] == "http://ns.example.com/epcis/")
    }

    @Test("schema rules: required fields per type, offsets, namespaced extensions, numbers")
    func schemaRules() throws {
        // Fixed inputs to the reader, which judges no date against a clock: any past date does.
        let document = """
        {"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"], "type": "EPCISDocument",
         "schemaVersion": "2.0", "creationDate": "2024-03-05T10:00:00Z", "epcisBody": {"eventList": [
           {"type": "ObjectEvent", "eventTime": "2024-03-05T08:00:00+01:00", "eventTimeZoneOffset": "+1:00", "action": "OBSERVE"},
           {"type": "TransformationEvent", "action": "ADD", "eventTime": "2024-03-05T08:00:00Z", "eventTimeZoneOffset": "+00:00"},
           {"type": "TransactionEvent", "action": "ADD", "eventTime": "2024-03-05", "eventTimeZoneOffset": "+00:00"},
           {"type": "ObjectEvent", "action": "OBSERVE", "eventTime": "2024-03-05T08:00:00Z", "eventTimeZoneOffset": "+00:00",
            "myField": 1, "undeclared:field": 2, "quantityList": [{"epcClass": "urn:epc:idpat:grai:4000001.11111.*", "quantity": true}]},
           {"type": "ObjectEvent", "action": "OBSERVE", "eventTime": "2024-03-05T08:00:00Z", "eventTimeZoneOffset": "+00:00",
            "errorDeclaration": {"reason": "incorrect_data"}}
         ]}}
        """
        let reading = EPCISReader.readDocument(try JSONValue.parse(Data(document.utf8)))
        let fields = Set(reading.allErrors.map(\.field))
        #expect(fields == [
            "epcisBody.eventList[0].eventTimeZoneOffset",
            "epcisBody.eventList[1].action",
            "epcisBody.eventList[2].eventTime", "epcisBody.eventList[2].bizTransactionList",
            "epcisBody.eventList[3].myField", "epcisBody.eventList[3].undeclared:field",
            "epcisBody.eventList[3].quantityList[0].quantity",
            "epcisBody.eventList[4].errorDeclaration.declarationTime", "epcisBody.eventList[4].eventID",
        ])
    }

    @Test("deep nesting and broken JSON are refused by the parser, not by the stack")
    func hostileJSON() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Data(deep.utf8)) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Data("{\"a\": 1,}".utf8)) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Data([0x22, 0xFF, 0x22])) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Data("{\"a\": 1, \"a\": 2}".utf8)) }
    }
}
