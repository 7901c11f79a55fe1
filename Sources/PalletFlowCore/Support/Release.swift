/// This release of PalletFlow, as `--version` prints it (with the schema version the
/// executables migrate to, which `/readyz` and `palletflow migrate` compare).
public enum Release {
    public static let version = "0.21.0"
}
