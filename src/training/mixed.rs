//! The small model's regime: a frozen pretrained picture encoder beside a caption encoder
//! trained from scratch. The picture's features are cached like the heads-only regime's
//! ([`super::inputs`]); the BiLSTM trains end to end on the tokenised captions, with word
//! dropout ([`Captions`]), and the heads on both.

use anyhow::{Context, Result, ensure};
use burn::prelude::*;
use mvsa_model::ModelConfig;
use mvsa_model::model::{ImageEncoder, Precomputed, SentimentModel, TextEncoder};
use mvsa_model::preprocess::{TextPreprocessor, Tokens};
use rand::rngs::StdRng;

use super::fit::{Batch, Labelled, Regime, labels};
use super::heads::stack;
use super::scratch::Captions;
use crate::data::Sample;

pub struct Mixed {
    config: ModelConfig,
    /// The pretrained picture encoder that computed the cached features, frozen.
    image: ImageEncoder,
    captions: Captions,
    device: Device,
}

/// A pair as this regime keeps it: the picture's cached features and the caption's tokens.
pub struct Pair {
    image: Vec<f32>,
    tokens: Tokens,
}

impl Mixed {
    pub fn new(
        config: &ModelConfig,
        image: ImageEncoder,
        text: &TextPreprocessor,
        word_dropout: f64,
        device: &Device,
    ) -> Result<Self> {
        ensure!(
            config.image.is_some() && config.text.is_some(),
            "a pretrained picture encoder beside a from-scratch caption encoder needs both branches"
        );
        Ok(Self {
            config: config.clone(),
            image,
            captions: Captions::new(text, word_dropout)?,
            device: device.clone(),
        })
    }

    /// Each sample's picture features (one row per sample, as cached) and tokens.
    pub fn inputs(&self, samples: &[Sample], features: Vec<Vec<f32>>) -> Result<Vec<Pair>> {
        ensure!(
            features.len() == samples.len(),
            "{} picture features for {} pairs",
            features.len(),
            samples.len()
        );
        samples
            .iter()
            .zip(features)
            .map(|(s, image)| {
                let tokens = self.captions.encode(&s.caption)?;
                Ok(Pair { image, tokens })
            })
            .collect()
    }
}

impl Regime for Mixed {
    type Image = Precomputed;
    type Text = TextEncoder;
    type Example = Pair;

    fn init(&self, device: &Device) -> Result<SentimentModel<Precomputed, TextEncoder>> {
        let branch = self.config.text.as_ref().context("no caption branch")?;
        let text = TextEncoder::new(&branch.encoder, self.config.dropout, device);
        Ok(self
            .config
            .init_with(Some(Precomputed), Some(text), device)?)
    }

    fn batch(
        &self,
        examples: &[&Labelled<Pair>],
        augment: Option<&mut StdRng>,
        device: &Device,
    ) -> Batch<Precomputed, TextEncoder> {
        let tokens = examples.iter().map(|e| &e.input.tokens);
        Batch {
            image: stack(examples, |p| Some(&p.image), device),
            text: Some(self.captions.batch(tokens, augment, device)),
            labels: labels(examples, device),
        }
    }

    /// The frozen picture encoder back under the heads, beside the trained caption encoder.
    fn finish(self, model: SentimentModel<Precomputed, TextEncoder>) -> Result<SentimentModel> {
        let text = model.text_encoder().cloned();
        let shipped = self
            .config
            .init_with(Some(self.image), text, &self.device)?;
        Ok(shipped.with_heads_of(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use mvsa_model::config::{ImageBranchConfig, TextBranchConfig};
    use mvsa_model::model::{Encoder, MobileCnn};
    use rand::SeedableRng;

    use crate::tokenizer::{PAD, train_tokenizer};

    #[test]
    fn the_shipped_model_runs_the_frozen_picture_encoder_under_what_trained() {
        let device = Device::flex();
        let captions = [
            "a happy day",
            "so sad today",
            "the news at six",
            "a lovely view",
        ];
        let tokenizer = train_tokenizer(captions.iter().copied(), 100).unwrap();
        let mut branch = TextBranchConfig::scratch(tokenizer.get_vocab_size(true), 8);
        branch.preprocess.pad_id = tokenizer.token_to_id(PAD).unwrap();
        let config = ModelConfig::new(Some(ImageBranchConfig::mobilenet_v2()), Some(branch));
        let text = TextPreprocessor::new(tokenizer, config.text.clone().unwrap()).unwrap();
        let encoder = ImageEncoder::Pretrained(MobileCnn::mobilenet_v2(false, &device));
        let images = Tensor::<4>::random([4, 3, 32, 32], Distribution::Default, &device);
        let features = encoder.encode(images.clone()).into_data();
        let features: Vec<f32> = features.try_into_vec().unwrap();
        let regime = Mixed::new(&config, encoder, &text, 0.5, &device).unwrap();
        let examples: Vec<Labelled<Pair>> = (features.chunks(features.len() / 4))
            .zip(captions)
            .enumerate()
            .map(|(i, (row, caption))| Labelled {
                input: Pair {
                    image: row.to_vec(),
                    tokens: regime.captions.encode(caption).unwrap(),
                },
                label: i % 3,
            })
            .collect();
        let refs: Vec<&Labelled<Pair>> = examples.iter().collect();
        // Word dropout draws only for training batches.
        let plain = regime.batch(&refs, None, &device);
        let mut rng = StdRng::seed_from_u64(3);
        let dropped = regime.batch(&refs, Some(&mut rng), &device);
        let ids = |b: &Batch<Precomputed, TextEncoder>| b.text.as_ref().unwrap().ids.to_data();
        assert_ne!(ids(&plain), ids(&dropped));
        // The model trains on the cached features; the one that ships reads pictures through
        // the frozen encoder under the same heads and caption encoder, with the same answers.
        let model = regime.init(&device).unwrap();
        let tokens = plain.text.clone();
        let on_features = model.forward(plain.image, plain.text).unwrap().fused;
        let shipped = regime.finish(model).unwrap();
        let end_to_end = shipped.forward(Some(images), tokens).unwrap().fused;
        end_to_end
            .into_data()
            .assert_approx_eq::<f32>(&on_features.into_data(), Tolerance::default());
    }
}
