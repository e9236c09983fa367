//! Heads on frozen features: the pretrained encoders ran once over every pair
//! ([`super::inputs`]); the branch heads and the fusion head train on their cached outputs, so
//! an epoch is a pass over small vectors and retraining takes seconds.

use anyhow::{Context, Result};
use burn::prelude::*;
use mvsa_model::ModelConfig;
use mvsa_model::model::{Precomputed, SentimentModel, feature_batch};
use rand::rngs::StdRng;

use super::regime::{Batch, Labelled, Regime, labels};

pub struct Heads {
    config: ModelConfig,
    /// The model that ships: the pretrained encoders, under heads not yet trained (none for
    /// a teacher, which is never shipped).
    pretrained: Option<SentimentModel>,
}

/// A pair as this regime keeps it: each branch's encoder features.
#[derive(Clone)]
pub struct Features {
    pub image: Option<Vec<f32>>,
    pub text: Option<Vec<f32>>,
}

impl Heads {
    pub fn new(config: &ModelConfig, pretrained: SentimentModel) -> Self {
        Self {
            config: config.clone(),
            pretrained: Some(pretrained),
        }
    }

    /// Heads that only teach ([`super::distil`]): trained, scored, never shipped.
    pub fn teacher(config: &ModelConfig) -> Self {
        Self {
            config: config.clone(),
            pretrained: None,
        }
    }
}

/// `part` of each example stacked into `[batch, width]`, or `None` when the examples lack it.
pub fn stack<X>(
    examples: &[&Labelled<X>],
    part: impl Fn(&X) -> Option<&Vec<f32>>,
    device: &Device,
) -> Option<Tensor<2>> {
    let rows: Option<Vec<&Vec<f32>>> = examples.iter().map(|e| part(&e.input)).collect();
    let rows = rows?;
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Some(feature_batch(flat, examples.len(), device))
}

impl Regime for Heads {
    type Image = Precomputed;
    type Text = Precomputed;
    type Example = Features;

    fn init(&self, device: &Device) -> Result<SentimentModel<Precomputed, Precomputed>> {
        let image = self.config.image.as_ref().map(|_| Precomputed);
        let text = self.config.text.as_ref().map(|_| Precomputed);
        Ok(self.config.init_with(image, text, device)?)
    }

    fn batch(
        &self,
        examples: &[&Labelled<Features>],
        _augment: Option<&mut StdRng>,
        device: &Device,
    ) -> Batch<Precomputed, Precomputed> {
        Batch {
            image: stack(examples, |f| f.image.as_ref(), device),
            text: stack(examples, |f| f.text.as_ref(), device),
            labels: labels(examples, device),
            targets: None,
        }
    }

    fn finish(&self, model: SentimentModel<Precomputed, Precomputed>) -> Result<SentimentModel> {
        let pretrained = (self.pretrained.clone()).context("a teacher's heads are not shipped")?;
        Ok(pretrained.with_heads_of(model))
    }
}
