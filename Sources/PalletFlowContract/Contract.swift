/// The HTTP contract. `openapi.yaml` beside this file is the source of truth: the
/// swift-openapi-generator plugin makes `APIProtocol`, `Operations` and `Components` from
/// it at build time, and the EmbedFiles plugin carries its text into the binary.
public enum Contract {
    /// The OpenAPI document served at `/openapi.yaml`, exactly as in the repository.
    public static var document: String { EmbeddedContract.files[0].contents }
}
