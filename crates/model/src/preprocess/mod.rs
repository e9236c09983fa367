//! Preprocessing shared by the trainer, the predictor and the page: caption bytes → text,
//! text → token ids, image bytes → normalised CHW floats. Nothing here touches the file system
//! or builds tensors; the settings come from the model's config.
//!
//! One module a job: [`caption`] (bytes → text), [`tokens`] (text → token ids),
//! [`reading`] (what the model reads of a caption), [`picture`] (bytes → pixels).

mod caption;
mod picture;
mod reading;
mod tokens;

pub use caption::{decode_caption, normalise, spell_emoji};
pub use picture::{
    FORMATS, ImagePreprocessor, MAX_DECODED_BYTES, MAX_FILE_BYTES, MAX_PROGRESSIVE_PIXELS,
};
pub use reading::{MIN_LATIN_SHARE, Reading, latin_share, split_words};
pub use tokens::{LENGTH_BUCKETS, TextPreprocessor, TokenRows, Tokens};

#[cfg(test)]
mod tests;
