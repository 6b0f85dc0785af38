//! The versions of what kolm runs, for the records that name them (manifests, cache keys).
//!
//! They live below everything so that the container can record which runtime made an artifact
//! without knowing the runtime, and a stage's key can name it without loading it.

/// The llama.cpp binding kolm links (pinned `=` in Cargo.toml; its API moves between patch
/// releases): recorded in manifests and part of the train and score stages' keys.
pub const LLAMA_CPP_2: &str = "llama-cpp-2 0.1.160";

/// `kolm/<version> (<llama.cpp binding>)`, the runtime string sealed into every manifest.
pub fn runtime() -> String {
    format!("kolm/{} ({LLAMA_CPP_2})", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    /// The recorded version is the one the workspace Cargo.toml pins.
    #[test]
    fn llama_cpp_2_is_the_pinned_version() {
        let toml = include_str!("../../../Cargo.toml");
        let pinned = toml
            .lines()
            .find_map(|l| l.strip_prefix("llama-cpp-2 = \"="))
            .and_then(|v| v.strip_suffix('"'))
            .expect("Cargo.toml pins llama-cpp-2 with `=`");
        assert_eq!(super::LLAMA_CPP_2, format!("llama-cpp-2 {pinned}"));
    }
}
