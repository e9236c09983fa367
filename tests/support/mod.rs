//! What the integration tests share: the fixture folders and pairs, and the tools' command
//! lines. (Each test file uses part of it.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use mvsa_model::preprocess::decode_caption;
use serde_json::Value;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures/mini`: a dozen real pairs in the lab layout (one caption that is not UTF-8,
/// two 48 px pictures), with `train.txt` and `test_without_label.txt`.
pub fn fixture() -> PathBuf {
    root().join("tests/fixtures/mini")
}

/// One fixture pair's picture bytes and decoded caption.
pub fn pair(guid: &str) -> (Vec<u8>, String) {
    let data = fixture().join("data");
    let image = std::fs::read(data.join(format!("{guid}.jpg"))).unwrap();
    let caption = decode_caption(&std::fs::read(data.join(format!("{guid}.txt"))).unwrap());
    (image, caption)
}

/// Every fixture pair, by guid.
pub fn pairs() -> Vec<(Vec<u8>, String)> {
    let mut guids: Vec<String> = std::fs::read_dir(fixture().join("data"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".jpg").map(str::to_string)
        })
        .collect();
    guids.sort();
    guids.iter().map(|g| pair(g)).collect()
}

/// Copy the fixture folder so a test can break it.
pub fn copy_fixture(to: &Path) {
    std::fs::create_dir_all(to.join("data")).unwrap();
    for entry in std::fs::read_dir(fixture().join("data")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("data").join(entry.file_name())).unwrap();
    }
    for list in ["train.txt", "test_without_label.txt"] {
        std::fs::copy(fixture().join(list), to.join(list)).unwrap();
    }
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A tool of this crate (`train`, `predict`, `bench`).
pub fn bin(name: &str) -> Command {
    Command::cargo_bin(name).unwrap()
}

/// `train`'s arguments for `data` into `out` with settings fast enough for the fixture folder:
/// 4-pair batches, a quarter held out.
pub fn train_args(data: &Path, out: &Path, epochs: u32, seed: u64) -> Vec<String> {
    let (epochs, seed) = (epochs.to_string(), seed.to_string());
    [
        "--data",
        arg(data),
        "--out",
        arg(out),
        "--epochs",
        &epochs,
        "--batch-size",
        "4",
        "--val-fraction",
        "0.25",
        "--seed",
        &seed,
    ]
    .map(String::from)
    .to_vec()
}

/// [`train_args`] for the small model with its picture encoder trained from scratch too (fast,
/// no pretrained files), with a small vocabulary, 32 px pictures and 24 tokens.
pub fn train_small_args(data: &Path, out: &Path, epochs: u32, seed: u64) -> Vec<String> {
    let mut args = train_args(data, out, epochs, seed);
    let small = [
        "--small",
        "--image-encoder",
        "scratch",
        "--vocab-size",
        "300",
        "--image-size",
        "32",
        "--max-len",
        "24",
    ];
    args.extend(small.map(String::from));
    args
}

/// `train` with [`train_args`].
pub fn train(data: &Path, out: &Path, epochs: u32, seed: u64) -> Command {
    let mut cmd = bin("train");
    cmd.args(train_args(data, out, epochs, seed));
    cmd
}

/// `train` with [`train_small_args`].
pub fn train_small(data: &Path, out: &Path, epochs: u32, seed: u64) -> Command {
    let mut cmd = bin("train");
    cmd.args(train_small_args(data, out, epochs, seed));
    cmd
}

/// `predict` with the model folder `model`.
pub fn predict(model: &Path) -> Command {
    let mut cmd = bin("predict");
    cmd.args(["--model", arg(model)]);
    cmd
}

/// The fetched pretrained encoders (`scripts/fetch-encoders.sh`; `MVSA_ENCODERS` as for the
/// tools).
pub fn encoders() -> mvsa_sentiment::pretrained::EncoderFiles {
    let dir = std::env::var_os("MVSA_ENCODERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| mvsa_sentiment::cli::cache_dir("encoders"));
    mvsa_sentiment::pretrained::EncoderFiles::new(dir)
}
