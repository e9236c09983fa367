//! Errors of the model crate. The CLIs wrap them with `anyhow` context; the page shows their
//! message.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Image(String),
    #[error("image is {width}x{height} px; the limit is {limit}x{limit}")]
    ImageTooLarge { width: u32, height: u32, limit: u32 },
    #[error("caption is empty")]
    EmptyCaption,
    #[error("caption is {len} bytes; the limit is {limit}")]
    CaptionTooLong { len: usize, limit: usize },
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("invalid tokenizer: {0}")]
    Tokenizer(String),
    #[error("weights do not match the model config: {0}")]
    Weights(String),
    #[error("nothing to classify: give an image, a caption or both")]
    NoInput,
    #[error("this model has no {0} branch")]
    MissingBranch(&'static str),
    #[error("tensor read failed: {0}")]
    Tensor(String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}
