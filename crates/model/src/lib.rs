//! The image + caption sentiment model, everything that runs in the browser as well as
//! natively. The flow, one module a stage:
//!
//! [`config`] (the model's `config.json`) → [`preprocess`] (pictures, captions) and
//! [`model`] (the Burn model) → [`classifier`] (pairs in, predictions out), with [`folder`]
//! owning the model folder's files and [`metrics`] the scores a classifier is judged by.
//!
//! Nothing here knows about training, the file layout of the data set or the page: the trainer
//! (the workspace's root crate) and the page's wasm API (`crates/web`) build on this crate.

pub mod classifier;
pub mod config;
pub mod error;
pub mod explain;
pub mod folder;
pub mod metrics;
pub mod model;
pub mod preprocess;

pub use classifier::{Classifier, Note, NoteKind, Pair, Prediction, Prepared};
pub use config::{Modality, ModelConfig};
pub use error::{Error, Result};

/// 64-bit FNV-1a: a cache key (browser cache name, feature cache rows), not a security digest.
pub fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in parts.into_iter().flatten() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
