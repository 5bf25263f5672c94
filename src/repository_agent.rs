//! Triton's repository agents: steps a model's configuration asks for
//! (`model_repository_agents`) that run on its files before it loads.
//! Triton ships one, `checksum`, which this server runs itself: each
//! parameter `MD5:<file>` gives the MD5 digest (lowercase hex) that the
//! file, relative to the model's directory, must have, and a file that
//! differs fails the load. An agent of another name fails the load too, as
//! in Triton when its library is not installed.

use std::path::{Component, Path};

use md5::{Digest, Md5};

use crate::model_config::ModelConfig;

/// The agent Triton ships with its server.
pub const CHECKSUM_AGENT: &str = "checksum";

/// Runs the agents of `config`, in order, on the files in `model_dir`;
/// the first that refuses gives the reason the model does not load.
pub fn run_before_load(config: &ModelConfig, model_dir: &Path) -> Result<(), String> {
    let Some(agents) = &config.model_repository_agents else {
        return Ok(());
    };
    for agent in &agents.agents {
        if agent.name != CHECKSUM_AGENT {
            return Err(format!(
                "repository agent '{}' is not available; this server runs Triton's '{CHECKSUM_AGENT}' agent only",
                agent.name
            ));
        }
        // A map in the configuration: sorted, so the first mismatch named
        // does not depend on the order it is read in.
        let mut parameters: Vec<(&String, &String)> = agent.parameters.iter().collect();
        parameters.sort();
        for (key, expected) in parameters {
            check_digest(model_dir, key, expected)?;
        }
    }
    Ok(())
}

/// Checks one `checksum` parameter: `<algorithm>:<file>` and the digest
/// the file must have.
fn check_digest(model_dir: &Path, key: &str, expected: &str) -> Result<(), String> {
    let (algorithm, file) = key.split_once(':').ok_or_else(|| format!("failed to parse key: {key}"))?;
    if !algorithm.eq_ignore_ascii_case("md5") {
        return Err(format!("Unsupported checksum algorithm: {algorithm}"));
    }
    // The configuration may come with a load request: it names files of
    // the model only, so that it cannot learn digests of others.
    let relative = Path::new(file);
    if !relative.components().all(|component| matches!(component, Component::Normal(_))) {
        return Err(format!("checksum file '{file}' must be a path inside the model's directory"));
    }
    let contents = std::fs::read(model_dir.join(relative))
        .map_err(|error| format!("failed to open file for read {file}: {error}"))?;
    let digest: String = Md5::digest(&contents).iter().map(|byte| format!("{byte:02x}")).collect();
    if digest != expected {
        return Err(format!("Mismatched MD5 hash for file {file}, expect: {expected}, got: {digest}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_text_format;

    fn config(agents: &str) -> ModelConfig {
        parse_text_format(&format!("model_repository_agents {{ agents [ {agents} ] }}")).unwrap()
    }

    #[test]
    fn the_checksum_agent_compares_md5_digests() {
        let model = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(model.path().join("1")).unwrap();
        // The MD5 test vector of RFC 1321.
        std::fs::write(model.path().join("1/model.onnx"), "abc").unwrap();
        let agent = |value: &str| {
            config(&format!(r#"{{ name: "checksum" parameters [ {{ key: "MD5:1/model.onnx" value: "{value}" }} ] }}"#))
        };
        run_before_load(&agent("900150983cd24fb0d6963f7d28e17f72"), model.path()).unwrap();
        assert_eq!(
            run_before_load(&agent("0123"), model.path()).unwrap_err(),
            "Mismatched MD5 hash for file 1/model.onnx, expect: 0123, got: 900150983cd24fb0d6963f7d28e17f72"
        );
        run_before_load(&ModelConfig::default(), model.path()).unwrap();
    }

    #[test]
    fn keys_files_and_agents_that_cannot_be_checked_fail_the_load() {
        let model = tempfile::tempdir().unwrap();
        let checksum = |key: &str| {
            let text = format!(r#"{{ name: "checksum" parameters [ {{ key: "{key}" value: "x" }} ] }}"#);
            run_before_load(&config(&text), model.path()).unwrap_err()
        };
        assert_eq!(checksum("model.onnx"), "failed to parse key: model.onnx");
        assert_eq!(checksum("SHA1:model.onnx"), "Unsupported checksum algorithm: SHA1");
        assert!(checksum("MD5:missing").starts_with("failed to open file for read missing: "));
        for outside in ["../secret", "/etc/hostname", "1/../../secret"] {
            assert!(checksum(&format!("MD5:{outside}")).contains("must be a path inside the model's directory"));
        }
        let other = run_before_load(&config(r#"{ name: "decrypt" }"#), model.path()).unwrap_err();
        assert!(other.starts_with("repository agent 'decrypt' is not available"), "{other}");
    }
}
