//! The model folder: what a trained model is on disk and on the web. The trainer writes it, the
//! predictor and the page read it, and this module alone knows its file names and formats:
//!
//! ```text
//! config.json      ModelConfig, with a format version (older folders are read and upgraded)
//! tokenizer.json   the caption tokenizer (Hugging Face `tokenizers` format; absent for a
//!                  picture-only model)
//! model.bpk        the weights (burnpack; f16 or f32)
//! metrics.json     what the trainer measured (its schema belongs to the trainer)
//! training.svg, confusion.svg
//! ```
//!
//! Next to the folders, `models.json` ([`Manifest`]) lists the models a page offers.

mod legacy;
mod manifest;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
pub use manifest::{FILE as MANIFEST, Manifest, ManifestEntry, ValidationSummary};

pub const CONFIG: &str = "config.json";
pub const TOKENIZER: &str = "tokenizer.json";
pub const WEIGHTS: &str = "model.bpk";
pub const METRICS: &str = "metrics.json";
pub const CURVES: &str = "training.svg";
pub const CONFUSION: &str = "confusion.svg";
/// The files a model needs to run, in the order a page downloads them.
pub const RUNTIME_FILES: [&str; 3] = [CONFIG, TOKENIZER, WEIGHTS];

/// The `config.json` format this version writes. Files without a `format` key are the flat
/// format of the first versions, read by [`legacy`].
pub const FORMAT: u32 = 2;

/// The files a model needs to run, parsed where they are small.
pub struct ModelFiles {
    pub config: ModelConfig,
    /// `tokenizer.json`, for a model with a caption branch.
    pub tokenizer: Option<Vec<u8>>,
    pub weights: Vec<u8>,
}

impl ModelFiles {
    /// From the files' bytes (what the page fetched).
    pub fn from_bytes(config: &[u8], tokenizer: Option<Vec<u8>>, weights: Vec<u8>) -> Result<Self> {
        Ok(Self {
            config: read_config(config)?,
            tokenizer,
            weights,
        })
    }

    /// Read a model folder from disk.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG);
        let config = read_config(&read_file(&path)?).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            e => e,
        })?;
        let tokenizer = match config.text {
            Some(_) => Some(read_file(&dir.join(TOKENIZER))?),
            None => None,
        };
        let weights = read_file(&dir.join(WEIGHTS))?;
        Ok(Self {
            config,
            tokenizer,
            weights,
        })
    }

    /// Write the files into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        write_file(&dir.join(CONFIG), config_json(&self.config).as_bytes())?;
        if let Some(tokenizer) = &self.tokenizer {
            write_file(&dir.join(TOKENIZER), tokenizer)?;
        }
        write_file(&dir.join(WEIGHTS), &self.weights)
    }
}

/// The stored form of a config: the current format version, then the config.
#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    #[serde(flatten)]
    config: ModelConfig,
}

/// Parse `config.json` of any format version this code knows, and validate it.
pub fn read_config(bytes: &[u8]) -> Result<ModelConfig> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::Config(e.to_string()))?;
    let config = match value.get("format").map(serde_json::Value::as_u64) {
        None => legacy::read(value)?,
        Some(Some(v)) if v == u64::from(FORMAT) => {
            let stored: Stored =
                serde_json::from_value(value).map_err(|e| Error::Config(e.to_string()))?;
            stored.config
        }
        Some(v) => {
            return Err(Error::Config(format!(
                "format {v:?} is not one this version reads (it writes {FORMAT}); \
                 a newer version of the trainer wrote it"
            )));
        }
    };
    config.validate()?;
    Ok(config)
}

/// `config.json` in the current format.
pub fn config_json(config: &ModelConfig) -> String {
    let stored = Stored {
        format: FORMAT,
        config: config.clone(),
    };
    serde_json::to_string_pretty(&stored).expect("a config always serialises")
}

/// The name of the browser cache a folder's large files are kept under: every training run
/// writes a different `metrics.json`, so a retrained model never meets stale cached weights.
pub fn cache_name(config: &[u8], metrics: &[u8]) -> String {
    format!("mvsa-model-{:016x}", crate::fnv1a([config, metrics]))
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io("read", path, e))
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| io("write", path, e))
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ImageBranchConfig, TextBranchConfig};

    #[test]
    fn config_round_trips_with_its_format() {
        let config = ModelConfig::new(
            Some(ImageBranchConfig::scratch(32)),
            Some(TextBranchConfig::scratch(500, 40)),
        );
        let json = config_json(&config);
        assert!(json.contains("\"format\": 2"), "{json}");
        assert_eq!(read_config(json.as_bytes()).unwrap(), config);
        let newer = json.replace("\"format\": 2", "\"format\": 3");
        let err = read_config(newer.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("newer version"), "{err}");
        assert!(read_config(b"{\"labels\": 3}").is_err());
    }

    #[test]
    fn a_missing_folder_names_the_file() {
        let err = ModelFiles::read(Path::new("no/such/folder")).err().unwrap();
        let message = err.to_string();
        assert!(message.contains("no/such/folder/config.json"), "{message}");
    }
}
