//! Every encoder from scratch, trained end to end on the stored pictures (a random crop,
//! mirrored half the time) and the tokenised captions (a few tokens hidden behind `[UNK]`:
//! [`Captions`], which [`super::mixed`] shares).

use anyhow::{Context, Result};
use burn::prelude::*;
use image::RgbImage;
use mvsa_model::ModelConfig;
use mvsa_model::model::{ImageEncoder, SentimentModel, TextEncoder, TokenBatch, image_batch};
use mvsa_model::preprocess::{ImagePreprocessor, TextPreprocessor, Tokens};
use rand::Rng;
use rand::rngs::StdRng;

use super::regime::{Batch, Labelled, Regime, labels};
use crate::data::Sample;
use crate::tokenizer::UNK;

pub struct Scratch {
    config: ModelConfig,
    images: Option<ImagePreprocessor>,
    text: Option<Captions>,
}

/// Captions for a caption encoder trained from scratch: tokenised once, and in each training
/// batch a share of their tokens hidden behind `[UNK]` (word dropout).
pub struct Captions {
    text: TextPreprocessor,
    unk: u32,
    word_dropout: f64,
}

impl Captions {
    pub fn new(text: &TextPreprocessor, word_dropout: f64) -> Result<Self> {
        let unk = text
            .tokenizer()
            .token_to_id(UNK)
            .context("the tokenizer has no [UNK] token")?;
        Ok(Self {
            text: text.clone(),
            unk,
            word_dropout,
        })
    }

    pub fn encode(&self, caption: &str) -> Result<Tokens> {
        Ok(self.text.encode(caption)?)
    }

    /// The captions' tokens as a batch; with `augment`, word dropout draws from it.
    pub fn batch<'a>(
        &self,
        tokens: impl Iterator<Item = &'a Tokens>,
        augment: Option<&mut StdRng>,
        device: &Device,
    ) -> TokenBatch {
        let mut tokens: Vec<Tokens> = tokens.cloned().collect();
        if let Some(rng) = augment {
            for t in &mut tokens {
                for id in &mut t.ids {
                    if rng.random_bool(self.word_dropout) {
                        *id = self.unk;
                    }
                }
            }
        }
        let rows = self.text.rows(&tokens.iter().collect::<Vec<_>>());
        TokenBatch::new(rows.ids, rows.mask, rows.shape, device)
    }
}

/// A pair as this regime keeps it: the stored (resized) picture and the caption's tokens.
pub struct Pair {
    image: Option<RgbImage>,
    tokens: Option<Tokens>,
}

impl Scratch {
    pub fn new(
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        word_dropout: f64,
    ) -> Result<Self> {
        Ok(Self {
            config: config.clone(),
            images: config
                .image
                .as_ref()
                .map(|b| ImagePreprocessor::new(b.preprocess.clone())),
            text: text.map(|t| Captions::new(t, word_dropout)).transpose()?,
        })
    }

    /// Each sample's stored picture and tokens.
    pub fn inputs(&self, samples: &[Sample]) -> Result<Vec<Pair>> {
        samples
            .iter()
            .map(|s| {
                let tokens = (self.text.as_ref())
                    .map(|t| t.encode(&s.caption))
                    .transpose()?;
                let image = self.images.as_ref().and(s.image.clone());
                Ok(Pair { image, tokens })
            })
            .collect()
    }

    /// (left, top, mirror) of each picture's crop: random when augmenting, else the centre.
    fn crops(&self, n: usize, rng: Option<&mut StdRng>) -> Vec<(usize, usize, bool)> {
        let margin = self.images.as_ref().map_or(0, ImagePreprocessor::margin);
        match rng {
            Some(rng) => (0..n)
                .map(|_| {
                    let left = rng.random_range(0..=margin);
                    let top = rng.random_range(0..=margin);
                    (left, top, rng.random_bool(0.5))
                })
                .collect(),
            None => vec![(margin / 2, margin / 2, false); n],
        }
    }
}

impl Regime for Scratch {
    type Image = ImageEncoder;
    type Text = TextEncoder;
    type Example = Pair;

    fn init(&self, device: &Device) -> Result<SentimentModel> {
        Ok(self.config.init(device))
    }

    fn batch(
        &self,
        examples: &[&Labelled<Pair>],
        mut augment: Option<&mut StdRng>,
        device: &Device,
    ) -> Batch<ImageEncoder, TextEncoder> {
        let crops = self.crops(examples.len(), augment.as_deref_mut());
        let image = self.images.as_ref().map(|pre| {
            // Every pair carries its picture when the model has a picture branch (`inputs`).
            let pixels = examples.iter().zip(&crops).flat_map(|(e, &(x, y, flip))| {
                let stored = e.input.image.as_ref();
                stored
                    .into_iter()
                    .flat_map(move |s| pre.crop(s, x, y, flip))
            });
            image_batch(pixels.collect(), examples.len(), pre.config().size, device)
        });
        let text = self.text.as_ref().map(|captions| {
            let tokens = examples.iter().flat_map(|e| e.input.tokens.as_ref());
            captions.batch(tokens, augment, device)
        });
        Batch {
            image,
            text,
            labels: labels(examples, device),
            targets: None,
        }
    }

    fn finish(&self, model: SentimentModel) -> Result<SentimentModel> {
        Ok(model)
    }
}
