//! `models.json`: the models a page offers, one entry per model folder beside it. The trainer
//! writes an entry when it writes a folder; the page builds its model menu from the file (what
//! each model is, what it costs to download, how accurate it was) without asking the server
//! for each folder.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{RUNTIME_FILES, read_file, write_file};
use crate::config::ModelConfig;
use crate::error::{Error, Result};

pub const FILE: &str = "models.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The first one is the page's default.
    pub models: Vec<ManifestEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The folder's name, next to `models.json` (also the page's `?model=` value).
    pub id: String,
    /// What it is, in a few words ("MobileNetV2 + all-MiniLM-L6-v2").
    pub title: String,
    pub image_encoder: Option<String>,
    pub text_encoder: Option<String>,
    /// Size in bytes of each file the page downloads to run the model.
    pub files: BTreeMap<String, u64>,
    /// SHA-256 (hex) of each of those files: the page and the predictor refuse (or, from a
    /// cache, refetch) a file that does not match. Empty in manifests written before it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sha256: BTreeMap<String, String>,
    pub validation: ValidationSummary,
}

/// The headline numbers of the folder's `metrics.json`: cross-validated means over `folds`
/// (with their standard deviations: accuracy, macro-F1, weighted-F1) where the model was
/// cross-validated, else one validation split's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationSummary {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub pairs: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sd: Option<[f64; 3]>,
}

impl ManifestEntry {
    /// The entry for the model folder `dir`, from its config and the sizes of its files.
    pub fn describe(
        dir: &Path,
        config: &ModelConfig,
        validation: ValidationSummary,
    ) -> Result<Self> {
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Config(format!("{} has no folder name", dir.display())))?;
        let mut files = BTreeMap::new();
        for name in RUNTIME_FILES {
            if name == super::TOKENIZER && config.text.is_none() {
                continue;
            }
            let path = dir.join(name);
            let meta = std::fs::metadata(&path).map_err(|e| super::io("read", &path, e))?;
            files.insert(name.to_string(), meta.len());
        }
        Ok(Self {
            id: id.to_string(),
            title: config.title(),
            image_encoder: config.image.as_ref().map(|b| b.encoder.name().to_string()),
            text_encoder: config.text.as_ref().map(|b| b.encoder.name().to_string()),
            files,
            sha256: BTreeMap::new(),
            validation,
        })
    }

    /// Bytes the page downloads for this model.
    pub fn download_bytes(&self) -> u64 {
        self.files.values().sum()
    }
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = read_file(path)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Add `entry`, or replace the entry of the same folder where it stands.
    pub fn upsert(&mut self, entry: ManifestEntry) {
        match self.models.iter_mut().find(|m| m.id == entry.id) {
            Some(existing) => *existing = entry,
            None => self.models.push(entry),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("a manifest always serialises");
        write_file(path, format!("{json}\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, accuracy: f64) -> ManifestEntry {
        ManifestEntry {
            id: id.into(),
            title: "t".into(),
            image_encoder: None,
            text_encoder: Some("scratch".into()),
            files: BTreeMap::from([("model.bpk".into(), 10), ("config.json".into(), 2)]),
            sha256: BTreeMap::new(),
            validation: ValidationSummary {
                accuracy,
                macro_f1: 0.5,
                weighted_f1: 0.5,
                pairs: 10,
                folds: None,
                sd: None,
            },
        }
    }

    #[test]
    fn upsert_replaces_in_place_and_appends_new_folders() {
        let mut manifest = Manifest::default();
        manifest.upsert(entry("model", 0.7));
        manifest.upsert(entry("model-small", 0.6));
        manifest.upsert(entry("model", 0.8));
        let ids: Vec<&str> = manifest.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["model", "model-small"]);
        assert_eq!(manifest.models[0].validation.accuracy, 0.8);
        assert_eq!(manifest.models[0].download_bytes(), 12);
        let dir = std::env::temp_dir().join(format!("mvsa-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        manifest.write(&dir.join(FILE)).unwrap();
        assert_eq!(Manifest::read(&dir.join(FILE)).unwrap(), manifest);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
