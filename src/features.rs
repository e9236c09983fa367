//! A cache of frozen-encoder features, so that retraining the heads on top of pretrained
//! encoders takes seconds instead of re-running MobileNet and MiniLM over every pair.
//!
//! One safetensors file per encoder in a cache folder the caller chooses (the CLIs:
//! `~/.cache/mvsa-sentiment/features`): a `keys` tensor (u64 digests of each input as the
//! encoder sees it, preprocessing settings included), a `features` tensor `[rows, dim]` and,
//! where an entry is several rows (MiniLM's hidden states, one row per token), a `lengths`
//! tensor of rows per entry. Entries are found by content, so another split, a `--limit` run
//! or a changed data folder reuse what they can.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

pub struct FeatureCache {
    path: PathBuf,
    dim: usize,
    rows: HashMap<u64, Vec<f32>>,
    dirty: bool,
}

impl FeatureCache {
    /// Open (or start) the cache `name` of `dim`-wide rows in `dir`. An unreadable or
    /// mismatched file is started afresh: it is only a cache.
    pub fn open(dir: &Path, name: &str, dim: usize) -> Self {
        let path = dir.join(format!("{name}.safetensors"));
        let rows = std::fs::read(&path)
            .ok()
            .and_then(|bytes| read_rows(&bytes, dim).ok())
            .unwrap_or_default();
        Self {
            path,
            dim,
            rows,
            dirty: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn get(&self, key: u64) -> Option<&[f32]> {
        self.rows.get(&key).map(Vec::as_slice)
    }

    /// Add an entry: one `dim`-wide row, or several one after the other.
    pub fn insert(&mut self, key: u64, row: Vec<f32>) {
        debug_assert_eq!(row.len() % self.dim, 0);
        self.rows.insert(key, row);
        self.dirty = true;
    }

    /// Write the file if anything was added (atomically: a temporary file, then a rename).
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut keys: Vec<u64> = self.rows.keys().copied().collect();
        keys.sort_unstable();
        let key_bytes: Vec<u8> = keys.iter().flat_map(|k| k.to_le_bytes()).collect();
        let lengths: Vec<u64> = keys
            .iter()
            .map(|k| (self.rows[k].len() / self.dim) as u64)
            .collect();
        let length_bytes: Vec<u8> = lengths.iter().flat_map(|n| n.to_le_bytes()).collect();
        let feature_bytes: Vec<u8> = keys
            .iter()
            .flat_map(|k| self.rows[k].iter().flat_map(|v| v.to_le_bytes()))
            .collect();
        let total = lengths.iter().sum::<u64>() as usize;
        let tensors = [
            (
                "keys",
                TensorView::new(Dtype::U64, vec![keys.len()], &key_bytes)?,
            ),
            (
                "lengths",
                TensorView::new(Dtype::U64, vec![keys.len()], &length_bytes)?,
            ),
            (
                "features",
                TensorView::new(Dtype::F32, vec![total, self.dim], &feature_bytes)?,
            ),
        ];
        let bytes = safetensors::serialize(tensors, None)?;
        let folder = self.path.parent().expect("cache file has a folder");
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let tmp = self.path.with_extension("part");
        std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.dirty = false;
        Ok(())
    }
}

fn read_rows(bytes: &[u8], dim: usize) -> Result<HashMap<u64, Vec<f32>>> {
    let file = SafeTensors::deserialize(bytes)?;
    let keys = file.tensor("keys")?;
    let features = file.tensor("features")?;
    ensure!(keys.dtype() == Dtype::U64 && features.dtype() == Dtype::F32);
    let n = keys.shape()[0];
    let u64s = |data: &[u8]| -> Vec<u64> {
        let words = data.chunks_exact(8);
        words
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect()
    };
    // Files without lengths hold one row per entry.
    let lengths = match file.tensor("lengths") {
        Ok(t) => u64s(t.data()),
        Err(_) => vec![1; n],
    };
    let total = lengths.iter().sum::<u64>() as usize;
    ensure!(lengths.len() == n && features.shape() == [total, dim]);
    let values: Vec<f32> = features
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    let mut start = 0;
    let mut rows = HashMap::with_capacity(n);
    for (key, len) in u64s(keys.data()).into_iter().zip(lengths) {
        let end = start + len as usize * dim;
        rows.insert(key, values[start..end].to_vec());
        start = end;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_a_save_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = FeatureCache::open(tmp.path(), "t", 3);
        assert!(cache.is_empty());
        cache.insert(7, vec![1.0, 2.0, 3.0]);
        cache.insert(u64::MAX, vec![-1.0, 0.5, 1e-9]);
        cache.save().unwrap();
        let back = FeatureCache::open(tmp.path(), "t", 3);
        assert_eq!(back.len(), 2);
        assert_eq!(back.get(7), Some(&[1.0, 2.0, 3.0][..]));
        assert_eq!(back.get(u64::MAX), Some(&[-1.0, 0.5, 1e-9][..]));
        // Another width is another cache: the old rows are not served.
        assert!(FeatureCache::open(tmp.path(), "t", 4).is_empty());
        // Entries of several rows (a caption's states, a row per token), none included.
        let mut states = FeatureCache::open(tmp.path(), "s", 2);
        states.insert(1, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        states.insert(2, vec![]);
        states.insert(3, vec![7.0, 8.0]);
        states.save().unwrap();
        let back = FeatureCache::open(tmp.path(), "s", 2);
        assert_eq!(back.get(1), Some(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0][..]));
        assert_eq!(back.get(2), Some(&[][..]));
        assert_eq!(back.get(3), Some(&[7.0, 8.0][..]));
    }
}
