//! The page's list of models, `www/models.json`: listing a model folder there (its headline
//! figures from `metrics.json`, and each file's size and SHA-256), and checking a listed folder
//! against its entry before it is loaded, so that a truncated, stale or swapped file is refused
//! with its name instead of being loaded half-right.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mvsa_model::folder::{self, Manifest, ManifestEntry};
use sha2::{Digest, Sha256};

use crate::report::MetricsFile;

/// Where the page's list of models beside `dir` would be.
pub fn manifest_beside(dir: &Path) -> PathBuf {
    dir.parent()
        .unwrap_or(Path::new("."))
        .join(folder::MANIFEST)
}

/// List the model folder `dir` in the `models.json` beside it when there is one (as in the
/// page's `www/`): a retrained model shows up in the page's menu with its new numbers.
pub fn register_if_listed(dir: &Path) -> Result<()> {
    let manifest = manifest_beside(dir);
    if manifest.is_file() {
        register(dir, &manifest)?;
    }
    Ok(())
}

/// Add (or update) `dir`'s entry in `manifest`, creating the file if needed.
pub fn register(dir: &Path, manifest: &Path) -> Result<()> {
    let config_path = dir.join(folder::CONFIG);
    let bytes = std::fs::read(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let config =
        folder::read_config(&bytes).with_context(|| format!("{}", config_path.display()))?;
    let metrics = MetricsFile::read(dir)?;
    let mut entry = ManifestEntry::describe(dir, &config, metrics.summary())?;
    entry.sha256 = hashes(dir, &entry)?;
    let mut list = if manifest.is_file() {
        Manifest::read(manifest)?
    } else {
        Manifest::default()
    };
    list.upsert(entry);
    list.write(manifest)?;
    Ok(())
}

/// Rewrite `dir`'s `config.json` in the current format (a folder written by an older version);
/// nothing else in the folder changes.
pub fn upgrade(dir: &Path) -> Result<()> {
    let path = dir.join(folder::CONFIG);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let config = folder::read_config(&bytes).with_context(|| format!("{}", path.display()))?;
    std::fs::write(&path, folder::config_json(&config))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The SHA-256 of each of `entry`'s files in `dir`.
pub fn hashes(dir: &Path, entry: &ManifestEntry) -> Result<BTreeMap<String, String>> {
    entry
        .files
        .keys()
        .map(|name| {
            let path = dir.join(name);
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            Ok((name.clone(), sha256_hex(&bytes)))
        })
        .collect()
}

/// Where the `models.json` beside `dir` lists it with hashes, check that every listed file
/// has its listed size and SHA-256. A folder that is not listed (a user's own) is not checked.
pub fn verify_listed(dir: &Path) -> Result<()> {
    let manifest_path = manifest_beside(dir);
    if !manifest_path.is_file() {
        return Ok(());
    }
    let manifest = Manifest::read(&manifest_path)?;
    let id = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let Some(entry) = manifest.models.iter().find(|m| m.id == id) else {
        return Ok(());
    };
    for (name, want) in &entry.sha256 {
        let path = dir.join(name);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let size = entry.files.get(name).copied().unwrap_or(bytes.len() as u64);
        let wrong = if size != bytes.len() as u64 {
            format!("{} bytes, {size} listed", bytes.len())
        } else {
            let got = sha256_hex(&bytes);
            if got == *want {
                continue;
            }
            format!("sha256 {got}, {want} listed")
        };
        bail!(
            "{}: does not match its entry in {} ({wrong}): the file is truncated or from \
             another training run; retrain, or list the folder again with `train --register {}`",
            path.display(),
            manifest_path.display(),
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
