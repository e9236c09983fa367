//! The small model's regime: a frozen pretrained picture encoder beside a caption encoder
//! trained from scratch. The picture's features are cached like the heads-only regime's
//! ([`super::inputs`]); the BiLSTM trains end to end on the tokenised captions, with word
//! dropout ([`Captions`]), and the heads on both; with a [`Teacher`], distilled from it (its
//! targets, and the unlabelled pairs it scores).

use anyhow::{Context, Result, ensure};
use burn::prelude::*;
use mvsa_model::ModelConfig;
use mvsa_model::model::{ImageEncoder, Precomputed, SentimentModel, TextEncoder};
use mvsa_model::preprocess::{TextPreprocessor, Tokens};
use rand::rngs::StdRng;

use super::distil::{Identified, Taught, Teacher};
use super::heads::stack;
use super::regime::{Batch, Labelled, Regime, labels};
use super::scratch::Captions;
use crate::data::Sample;
use crate::progress::Progress;

pub struct Mixed {
    config: ModelConfig,
    /// The pretrained picture encoder that computed the cached features, frozen.
    image: ImageEncoder,
    captions: Captions,
    device: Device,
    taught: Option<Taught<Pair>>,
}

/// A pair as this regime keeps it: the picture's cached features and the caption's tokens,
/// and its id (the teacher's: labelled pairs first, in order, then the unlabelled ones).
pub struct Pair {
    image: Vec<f32>,
    tokens: Tokens,
    id: usize,
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
            taught: None,
        })
    }

    /// Learn from `teacher` too, and train on `unlabelled` pairs (with their picture
    /// features) with its targets alone. The teacher's ids: `labelled` pairs first, then these.
    pub fn with_teacher(
        mut self,
        teacher: Teacher,
        labelled: usize,
        unlabelled: &[Sample],
        features: Vec<Vec<f32>>,
    ) -> Result<Self> {
        let pairs = self.inputs_from(labelled, unlabelled, features)?;
        self.taught = Some(Taught::new(teacher, labelled, pairs)?);
        Ok(self)
    }

    /// Each sample's picture features (one row per sample, as cached) and tokens.
    pub fn inputs(&self, samples: &[Sample], features: Vec<Vec<f32>>) -> Result<Vec<Pair>> {
        self.inputs_from(0, samples, features)
    }

    /// As [`Mixed::inputs`], the pairs' ids counting from `first`.
    fn inputs_from(
        &self,
        first: usize,
        samples: &[Sample],
        features: Vec<Vec<f32>>,
    ) -> Result<Vec<Pair>> {
        ensure!(
            features.len() == samples.len(),
            "{} picture features for {} pairs",
            features.len(),
            samples.len()
        );
        (samples.iter().zip(features).enumerate())
            .map(|(i, (s, image))| {
                let tokens = self.captions.encode(&s.caption)?;
                let id = first + i;
                Ok(Pair { image, tokens, id })
            })
            .collect()
    }
}

impl Identified for Pair {
    fn id(&self) -> usize {
        self.id
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
        // Training batches learn from the teacher; evaluation scores against the labels.
        let targets = match (augment.is_some(), &self.taught) {
            (true, Some(taught)) => taught.targets(examples, device),
            _ => None,
        };
        Batch {
            image: stack(examples, |p| Some(&p.image), device),
            text: Some(self.captions.batch(tokens, augment, device)),
            labels: labels(examples, device),
            targets,
        }
    }

    /// A new teacher for these pairs (each cross-validation fold, then the final fit).
    fn prepare(
        &self,
        train: &[&Labelled<Pair>],
        device: &Device,
        progress: &dyn Progress,
    ) -> Result<()> {
        match &self.taught {
            Some(taught) => taught.prepare(train, device, progress),
            None => Ok(()),
        }
    }

    fn unlabelled(&self) -> &[Labelled<Pair>] {
        self.taught.as_ref().map_or(&[], Taught::unlabelled)
    }

    /// The frozen picture encoder back under the heads, beside the trained caption encoder.
    fn finish(&self, model: SentimentModel<Precomputed, TextEncoder>) -> Result<SentimentModel> {
        let text = model.text_encoder().cloned();
        let image = Some(self.image.clone());
        let shipped = self.config.init_with(image, text, &self.device)?;
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

    use crate::progress::Quiet;
    use crate::tokenizer::{PAD, train_tokenizer};
    use crate::training::TrainingOptions;
    use crate::training::heads::Features;

    const CAPTIONS: [&str; 4] = [
        "a happy day",
        "so sad today",
        "the news at six",
        "a lovely view",
    ];

    /// MobileNetV2 (random weights) beside a BiLSTM over a vocabulary learned from
    /// [`CAPTIONS`].
    fn small(device: &Device) -> (ModelConfig, TextPreprocessor, ImageEncoder) {
        let tokenizer = train_tokenizer(CAPTIONS.iter().copied(), 100).unwrap();
        let mut branch = TextBranchConfig::scratch(tokenizer.get_vocab_size(true), 8);
        branch.preprocess.pad_id = tokenizer.token_to_id(PAD).unwrap();
        let config = ModelConfig::new(Some(ImageBranchConfig::mobilenet_v2()), Some(branch));
        let text = TextPreprocessor::new(tokenizer, config.text.clone().unwrap()).unwrap();
        let encoder = ImageEncoder::Pretrained(MobileCnn::mobilenet_v2(false, device));
        (config, text, encoder)
    }

    #[test]
    fn the_shipped_model_runs_the_frozen_picture_encoder_under_what_trained() {
        let device = Device::flex();
        let (config, text, encoder) = small(&device);
        let captions = CAPTIONS;
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
                    id: i,
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

    #[test]
    fn a_teacher_sets_the_training_targets_and_brings_its_unlabelled_pairs() {
        let device = Device::flex();
        let (config, text, encoder) = small(&device);
        let regime = Mixed::new(&config, encoder, &text, 0.0, &device).unwrap();
        // Three labelled pairs and one unlabelled, each with a picture's features and
        // (for the teacher) a caption's.
        let row = |i: usize| vec![i as f32 / 4.0; 1280];
        let shape = crate::training::tiny_minilm(1);
        let mut teacher_config = config.clone();
        teacher_config.text = Some(TextBranchConfig::minilm(shape));
        let features = |ids: std::ops::Range<usize>| -> Vec<Features> {
            (ids.map(|i| Features {
                image: Some(row(i)),
                text: Some(vec![i as f32; 8]),
            }))
            .collect()
        };
        let options = TrainingOptions::heads_only();
        let teacher = Teacher::new(
            &teacher_config,
            features(0..3),
            features(3..4),
            0.5,
            options,
        );
        let sample = |i: usize| Sample {
            guid: i.to_string(),
            image: None,
            caption: CAPTIONS[i].into(),
            label: 0,
        };
        let regime = regime.with_teacher(teacher.unwrap(), 3, &[sample(3)], vec![row(3)]);
        let regime = regime.unwrap();
        let pairs = regime.inputs(
            &[sample(0), sample(1), sample(2)],
            (0..3).map(row).collect(),
        );
        let train: Vec<Labelled<Pair>> = (pairs.unwrap().into_iter().enumerate())
            .map(|(label, input)| Labelled { input, label })
            .collect();
        let train: Vec<&Labelled<Pair>> = train.iter().collect();
        let mut rng = StdRng::seed_from_u64(1);
        // No teacher fitted yet: no unlabelled pairs, no targets but the labels.
        assert!(regime.unlabelled().is_empty());
        assert!(
            regime
                .batch(&train, Some(&mut rng), &device)
                .targets
                .is_none()
        );
        regime.prepare(&train, &device, &Quiet).unwrap();
        let unlabelled = regime.unlabelled();
        assert_eq!(unlabelled.len(), 1);
        // Training: a labelled pair's target is half its class, half the teacher's; the
        // unlabelled pair's the teacher's alone (by ids: the regime tells which pairs are
        // labelled). Evaluation scores against the labels.
        let batch = [train[1], &unlabelled[0]];
        let targets = regime.batch(&batch, Some(&mut rng), &device).targets;
        let rows: Vec<f32> = targets.unwrap().into_data().try_to_vec::<f32>().unwrap();
        let taught = regime.taught.as_ref().unwrap();
        taught.assert_targets(&rows, (1, 1), 3, &device);
        assert!(
            rows[1] >= 0.5 && rows[0] <= 0.5 && rows[2] <= 0.5,
            "{rows:?}"
        );
        assert!(regime.batch(&batch, None, &device).targets.is_none());
    }
}
