//! Training and running the image + caption sentiment model natively: the trainer, its data
//! reading, caches and reports, and what the command-line tools (`train`, `predict`, `bench`)
//! share. The model itself, its preprocessing and the model folder are the `mvsa-model` crate
//! (`crates/model`), which the page's wasm build (`crates/web`) uses too.
//!
//! The flow: [`data`] (the lab folder) → [`training`] (split, [`tokenizer`], the frozen
//! encoders' cached outputs from [`pretrained`] and [`features`], one epoch loop, a type per
//! regime) → [`report`] (`metrics.json`, [`plots`]) → [`listing`] (the page's model list and
//! its checks), with [`pipeline`] running those stages in order. [`progress`] and [`cli`] keep the terminal out of the rest.

pub mod cli;
pub mod data;
pub mod features;
pub mod listing;
pub mod mpnet;
pub mod pipeline;
pub mod plots;
pub mod pretrained;
pub mod progress;
pub mod report;
pub mod staging;
pub mod tokenizer;
pub mod training;

pub use pipeline::Trainer;
