//! Reading a folder in the MVSA course-lab layout:
//!
//! ```text
//! data/<guid>.jpg   data/<guid>.txt   train.txt (guid,tag)   test_without_label.txt (guid,null)
//! ```
//!
//! Label files are parsed strictly (a malformed row is an error naming file and line); pairs
//! whose files are missing or unreadable are skipped with a counted warning, never silently.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use image::RgbImage;
use mvsa_model::ModelConfig;
use mvsa_model::preprocess::{ImagePreprocessor, decode_caption};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::progress::Progress;

pub const TRAIN_LIST: &str = "train.txt";
pub const TEST_LIST: &str = "test_without_label.txt";

/// A lab folder: `root/data/<guid>.{jpg,txt}` plus list files in `root`.
#[derive(Clone, Debug)]
pub struct LabFolder {
    root: PathBuf,
}

impl LabFolder {
    pub fn open(root: &Path) -> Result<Self> {
        ensure!(
            root.is_dir(),
            "data folder {} does not exist",
            root.display()
        );
        let data = root.join("data");
        ensure!(
            data.is_dir(),
            "{} has no data/ folder (expected data/<guid>.jpg and data/<guid>.txt)",
            root.display()
        );
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn image_path(&self, guid: &str) -> PathBuf {
        self.root.join("data").join(format!("{guid}.jpg"))
    }

    pub fn caption_path(&self, guid: &str) -> PathBuf {
        self.root.join("data").join(format!("{guid}.txt"))
    }

    pub fn read_image(&self, guid: &str) -> Result<Vec<u8>> {
        let path = self.image_path(guid);
        std::fs::read(&path).with_context(|| format!("guid {guid}: cannot read {}", path.display()))
    }

    pub fn read_caption(&self, guid: &str) -> Result<String> {
        let path = self.caption_path(guid);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("guid {guid}: cannot read {}", path.display()))?;
        Ok(decode_caption(&bytes))
    }
}

/// One row of a `guid,tag` list file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub guid: String,
    pub tag: String,
    pub line: usize,
}

/// Read a `guid,tag` list (header optional, CRLF or LF, final newline optional, blank lines
/// ignored). Guids must be plain names (letters, digits, `-`, `_`) and unique.
pub fn read_list(path: &Path) -> Result<Vec<Row>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if number == 1 && fields.first() == Some(&"guid") {
            continue;
        }
        let where_ = || format!("{}:{number}", path.display());
        if fields.len() != 2 {
            bail!("{}: expected `guid,tag`, found {line:?}", where_());
        }
        let (guid, tag) = (fields[0], fields[1]);
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if guid.is_empty() || !guid.chars().all(plain) {
            bail!("{}: invalid guid {guid:?}", where_());
        }
        if !seen.insert(guid.to_string()) {
            bail!("{}: guid {guid} is listed twice", where_());
        }
        rows.push(Row {
            guid: guid.to_string(),
            tag: tag.to_string(),
            line: number,
        });
    }
    Ok(rows)
}

/// Rows with their tag resolved to a class index; an unknown tag is an error naming the row.
pub fn labelled(path: &Path, rows: &[Row], config: &ModelConfig) -> Result<Vec<(String, usize)>> {
    rows.iter()
        .map(|row| match config.label_index(&row.tag) {
            Some(label) => Ok((row.guid.clone(), label)),
            None => bail!(
                "{}:{}: guid {} has tag {:?}; expected one of {}",
                path.display(),
                row.line,
                row.guid,
                row.tag,
                config.labels.join(", ")
            ),
        })
        .collect()
}

/// A decoded training pair: the stored (resized) picture, the caption text and the label.
#[derive(Clone, Debug)]
pub struct Sample {
    pub guid: String,
    pub image: Option<RgbImage>,
    pub caption: String,
    pub label: usize,
}

/// A pair left out of training, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Skipped {
    pub guid: String,
    pub reason: String,
}

/// Read and preprocess labelled pairs on every core, in list order. Pictures are decoded and
/// resized (`images`) only when the model has a picture branch; pairs that cannot be read are
/// returned as [`Skipped`].
pub fn load_samples(
    folder: &LabFolder,
    rows: &[(String, usize)],
    images: Option<&ImagePreprocessor>,
    progress: &dyn Progress,
) -> (Vec<Sample>, Vec<Skipped>) {
    let load = |(guid, label): &(String, usize)| -> Result<Sample> {
        let caption = folder.read_caption(guid)?;
        let image = match images {
            Some(images) => {
                let bytes = folder.read_image(guid)?;
                let path = folder.image_path(guid);
                let image = images
                    .load(&bytes)
                    .with_context(|| format!("guid {guid}: {}", path.display()))?;
                Some(image)
            }
            None => None,
        };
        Ok(Sample {
            guid: guid.clone(),
            image,
            caption,
            label: *label,
        })
    };
    progress.begin("reading", rows.len());
    let results: Vec<Result<Sample>> = rows
        .par_iter()
        .map(|row| {
            let sample = load(row);
            progress.advance(1, None);
            sample
        })
        .collect();
    progress.finish();
    let mut samples = Vec::with_capacity(rows.len());
    let mut skipped = Vec::new();
    for ((guid, _), result) in rows.iter().zip(results) {
        match result {
            Ok(sample) => samples.push(sample),
            Err(e) => skipped.push(Skipped {
                guid: guid.clone(),
                reason: format!("{e:#}"),
            }),
        }
    }
    (samples, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvsa_model::config::TextBranchConfig;

    fn config() -> ModelConfig {
        ModelConfig::new(None, Some(TextBranchConfig::scratch(10, 8)))
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_lab_lists_with_header_crlf_and_no_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "train.txt",
            "guid,tag\r\n4597,negative\r\n26,Neutral\r\n\r\n7,positive",
        );
        let rows = read_list(&path).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[2],
            Row {
                guid: "7".into(),
                tag: "positive".into(),
                line: 5
            }
        );
        let config = config();
        let labels = labelled(&path, &rows, &config).unwrap();
        assert_eq!(
            labels,
            vec![("4597".into(), 0), ("26".into(), 1), ("7".into(), 2)]
        );
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let config = config();
        for (text, needle) in [
            (
                "guid,tag\n1,positive\n2 positive\n",
                ":3: expected `guid,tag`",
            ),
            ("guid,tag\n1,positive,extra\n", ":2: expected"),
            ("guid,tag\n../x,positive\n", ":2: invalid guid"),
            (
                "guid,tag\n1,positive\n1,negative\n",
                ":3: guid 1 is listed twice",
            ),
        ] {
            let path = write(dir.path(), "bad.txt", text);
            let err = format!("{:#}", read_list(&path).unwrap_err());
            assert!(err.contains(needle) && err.contains("bad.txt"), "{err}");
        }
        let path = write(dir.path(), "tags.txt", "guid,tag\n1,happy\n");
        let rows = read_list(&path).unwrap();
        let err = format!("{:#}", labelled(&path, &rows, &config).unwrap_err());
        assert!(
            err.contains("tags.txt:2: guid 1 has tag \"happy\""),
            "{err}"
        );
    }
}
