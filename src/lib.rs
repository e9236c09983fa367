//! Image + caption sentiment for MVSA-Single tweets.
//!
//! The flow, one file a stage: [`config`] (the model folder's `config.json`, one source of truth
//! for labels, image size and sequence length) → [`preprocess`] (image decode/resize/normalise,
//! caption decoding and tokenisation) → [`model`] (image branch, text branch, fusion head) →
//! [`training`] (native only) / [`inference`] (native and wasm). Pretrained [`encoders`] plug
//! into the model's branches; [`features`] caches what they compute so training the heads on
//! top takes seconds.
//!
//! Everything outside `data`, `training` and `plots` compiles for `wasm32-unknown-unknown`;
//! [`web`] is the page's wasm API.

pub mod config;
pub mod encoders;
pub mod error;
pub mod inference;
pub mod metrics;
pub mod model;
pub mod preprocess;

#[cfg(not(target_arch = "wasm32"))]
pub mod data;
#[cfg(not(target_arch = "wasm32"))]
pub mod features;
#[cfg(not(target_arch = "wasm32"))]
pub mod plots;
#[cfg(not(target_arch = "wasm32"))]
pub mod training;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use config::{Modality, ModelConfig};
pub use error::{Error, Result};
pub use inference::{Classifier, Prediction};

/// 64-bit FNV-1a: a cache key (browser cache name, feature cache rows), not a security digest.
pub fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in parts.into_iter().flatten() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// File names inside a model folder, shared by the trainer, the predictor and the page.
pub mod files {
    pub const CONFIG: &str = "config.json";
    pub const TOKENIZER: &str = "tokenizer.json";
    pub const WEIGHTS: &str = "model.bpk";
    pub const METRICS: &str = "metrics.json";
    pub const CURVES: &str = "training.svg";
    pub const CONFUSION: &str = "confusion.svg";
}

/// Run a command-line tool: an error is printed as one line naming the file and the problem
/// (whatever `RUST_BACKTRACE` says) and the process exits non-zero.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_cli(body: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
