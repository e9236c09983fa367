//! Image + caption sentiment for MVSA-Single tweets.
//!
//! The flow, one file a stage: [`config`] (the model folder's `config.json`, one source of truth
//! for labels, image size and sequence length) → [`preprocess`] (image decode/resize/normalise,
//! caption decoding and tokenisation) → [`model`] (image branch, text branch, fusion head) →
//! [`training`] (native only) / [`inference`] (native and wasm).
//!
//! Everything outside `data`, `training` and `plots` compiles for `wasm32-unknown-unknown`;
//! [`web`] is the page's wasm API.

pub mod config;
pub mod error;
pub mod inference;
pub mod metrics;
pub mod model;
pub mod preprocess;

#[cfg(not(target_arch = "wasm32"))]
pub mod data;
#[cfg(not(target_arch = "wasm32"))]
pub mod plots;
#[cfg(not(target_arch = "wasm32"))]
pub mod training;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use config::{Modality, ModelConfig};
pub use error::{Error, Result};
pub use inference::{Classifier, Prediction};

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
