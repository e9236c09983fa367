//! Native training: read the lab folder, split it (stratified, seeded), learn the tokenizer,
//! train the model with Adam on the flex CPU backend, keep the best validation epoch, and write
//! the model folder (weights, config, tokenizer, metrics, plots).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::{Modality, ModelConfig};
use crate::data::{self, LabFolder, Sample, Skipped};
use crate::encoders::{self, ImageEncoderKind, TextEncoderKind};
use crate::features::FeatureCache;
use crate::files;
use crate::metrics::{Metrics, argmax};
use crate::model::{Features, ModelInput, ModelOutput, SentimentModel};
use crate::preprocess::{ImagePreprocessor, TextPreprocessor, Tokens, train_tokenizer};

/// Which validation number picks the epoch to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    Accuracy,
    MacroF1,
}

/// Everything a training run depends on; written into `metrics.json` so a run can be repeated.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainingOptions {
    pub modality: Modality,
    /// The picture's encoder: trained from scratch, or a frozen pretrained CNN.
    #[serde(default)]
    pub image_encoder: ImageEncoderKind,
    /// The caption's encoder: trained from scratch, or frozen all-MiniLM-L6-v2.
    #[serde(default)]
    pub text_encoder: TextEncoderKind,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub val_fraction: f64,
    /// Use only this many labelled pairs (a stratified subset), for quick runs.
    pub limit: Option<usize>,
    /// Stop after this many epochs without a better validation score.
    pub patience: usize,
    pub select: Selection,
    /// Class weights are (majority count / class count) ^ power: 0 = unweighted, 1 = balanced.
    pub class_weight_power: f64,
    /// Weight of each branch's own loss next to the fused loss.
    pub branch_loss_weight: f64,
    /// Scratch text encoder only: vocabulary learned from the training captions, and tokens kept.
    pub vocab_size: usize,
    pub max_len: usize,
    /// Scratch image encoder only (the pretrained CNNs see 224 x 224).
    pub image_size: usize,
    pub dropout: f64,
    /// Share of caption tokens replaced by `[UNK]` in each training batch (augmentation).
    pub word_dropout: f64,
    /// Store the weights in f16 (half the download; the model still computes in f32).
    #[serde(default)]
    pub half_precision: bool,
    /// Fine-tune this many of MiniLM's top layers with the heads (0 = all frozen). The lower
    /// layers' hidden states are computed once per run; the top ones run every step.
    #[serde(default)]
    pub finetune_layers: usize,
    /// Adam learning rate of the fine-tuned layers (the heads use `lr`).
    #[serde(default)]
    pub finetune_lr: f64,
}

/// The shipped default: frozen pretrained encoders (see the README for the measurements
/// that picked them).
pub const DEFAULT_IMAGE_ENCODER: ImageEncoderKind = ImageEncoderKind::MobilenetV2;
pub const DEFAULT_TEXT_ENCODER: TextEncoderKind = TextEncoderKind::MinilmL6;

impl Default for TrainingOptions {
    fn default() -> Self {
        Self::for_encoders(DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER)
    }
}

impl TrainingOptions {
    /// Settings tuned (on our validation split) for each kind of model: the small
    /// from-scratch one trains everything for a few epochs with augmentation; with pretrained
    /// encoders, MiniLM's top two layers are fine-tuned with the heads for 8 epochs (a text
    /// encoder that adapts to tweets is worth 3 points of accuracy over a frozen one).
    pub fn for_encoders(image: ImageEncoderKind, text: TextEncoderKind) -> Self {
        let scratch = Self::scratch();
        if image.is_pretrained() || text.is_pretrained() {
            let options = Self {
                image_encoder: image,
                text_encoder: text,
                epochs: 8,
                batch_size: 32,
                lr: 1e-3,
                patience: 8,
                dropout: 0.3,
                half_precision: true,
                finetune_layers: 2,
                finetune_lr: 5e-5,
                ..scratch
            };
            // Only MiniLM is fine-tuned; with a scratch caption encoder, heads only.
            if text.is_pretrained() {
                options
            } else {
                options.heads_only()
            }
        } else {
            scratch
        }
    }

    /// Heads on frozen features only (no fine-tuning): many cheap epochs, each a pass over the
    /// cached features, so retraining takes seconds.
    pub fn heads_only(self) -> Self {
        Self {
            finetune_layers: 0,
            epochs: 60,
            patience: 15,
            ..self
        }
    }

    fn scratch() -> Self {
        Self {
            modality: Modality::Both,
            image_encoder: ImageEncoderKind::Scratch,
            text_encoder: TextEncoderKind::Scratch,
            epochs: 12,
            batch_size: 32,
            lr: 1e-3,
            seed: 42,
            val_fraction: 0.15,
            limit: None,
            patience: 5,
            select: Selection::Accuracy,
            class_weight_power: 0.5,
            branch_loss_weight: 0.5,
            vocab_size: 6000,
            max_len: 40,
            image_size: 32,
            dropout: 0.3,
            word_dropout: 0.1,
            half_precision: false,
            finetune_layers: 0,
            finetune_lr: 5e-5,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    pub seconds: f64,
}

/// `metrics.json`: the validation metrics of the kept epoch and how the run went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricsFile {
    /// Fused model on the validation split.
    pub validation: Metrics,
    /// The image branch's and the text branch's own heads on the same split.
    pub image_branch: Option<Metrics>,
    pub text_branch: Option<Metrics>,
    /// The written model folder, loaded back (f16 weights included) and run end to end on the
    /// validation pictures and captions: what the page and `predict` get.
    #[serde(default)]
    pub saved_model: Option<Metrics>,
    /// Frozen-encoder feature extraction of this run (what the feature cache did not have).
    #[serde(default)]
    pub features: Option<FeatureTiming>,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub training_seconds: f64,
    pub train_pairs: usize,
    pub validation_pairs: usize,
    pub skipped: Vec<Skipped>,
    pub history: Vec<EpochLog>,
    pub options: TrainingOptions,
    pub data: String,
}

/// How long the frozen encoders took over the pairs the feature cache lacked.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FeatureTiming {
    pub pairs: usize,
    pub image_computed: usize,
    pub image_seconds: f64,
    pub text_computed: usize,
    pub text_seconds: f64,
}

/// Stratified, seeded split: each class contributes `fraction` of its pairs to validation.
pub fn stratified_split(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for class in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        let n_valid = (members.len() as f64 * fraction).round() as usize;
        let n_valid = n_valid.min(members.len().saturating_sub(1));
        valid.extend_from_slice(&members[..n_valid]);
        train.extend_from_slice(&members[n_valid..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

/// One pair's frozen-encoder features: image, text (`None` for a branch the model lacks).
type PairFeatures = (Option<Vec<f32>>, Option<Vec<f32>>);

/// A training pair ready for batching: the picture and tokens for encoders that train, or the
/// frozen encoders' features.
struct Example {
    image: Option<image::RgbImage>,
    tokens: Tokens,
    features: Option<PairFeatures>,
    /// MiniLM hidden states `[tokens, hidden]` below the fine-tuned layers, and the index of the
    /// first fine-tuned layer.
    states: Option<(usize, Vec<f32>)>,
    label: usize,
}

pub struct Trainer {
    pub options: TrainingOptions,
    /// Print per-epoch lines and draw progress bars (off in tests).
    pub verbose: bool,
}

impl Trainer {
    fn bar(&self, len: u64) -> ProgressBar {
        let bar = ProgressBar::new(len);
        if !self.verbose {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar
    }

    fn say(&self, line: impl AsRef<str>) {
        if self.verbose {
            eprintln!("{}", line.as_ref());
        }
    }

    /// Train on the lab folder `data_dir` and write the model folder `out_dir`.
    pub fn run(&self, data_dir: &Path, out_dir: &Path) -> Result<MetricsFile> {
        let o = &self.options;
        ensure!(o.epochs > 0, "--epochs must be at least 1");
        ensure!(o.batch_size > 0, "--batch-size must be at least 1");
        ensure!(
            o.val_fraction > 0.0 && o.val_fraction < 1.0,
            "--val-fraction must be between 0 and 1, got {}",
            o.val_fraction
        );
        let started = Instant::now();
        let folder = LabFolder::open(data_dir)?;
        let list = folder.root().join(data::TRAIN_LIST);
        let mut config = ModelConfig::with_encoders(o.modality, o.image_encoder, o.text_encoder, 1);
        if !o.image_encoder.is_pretrained() {
            config.image.size = o.image_size;
            config.image.resize = o.image_size + o.image_size / 8;
        }
        if !o.text_encoder.is_pretrained() {
            config.text.max_len = o.max_len;
        }
        config.dropout = o.dropout;
        let frozen = config.frozen_encoders();
        ensure!(
            frozen || !(o.image_encoder.is_pretrained() || o.text_encoder.is_pretrained()),
            "a pretrained encoder next to a from-scratch one is not supported: use two pretrained \
             encoders, two scratch ones, or --modality to train one branch alone"
        );
        // The original weights are read before anything slow, so a missing fetch fails fast.
        let pretrained = if frozen {
            Some(
                config
                    .init(&Device::flex())
                    .with_pretrained_encoders(&config)?,
            )
        } else {
            None
        };

        let rows = data::read_list(&list)?;
        let mut rows = data::labelled(&list, &rows, &config)?;
        ensure!(
            !rows.is_empty(),
            "{} lists no labelled pairs",
            list.display()
        );
        if let Some(limit) = o.limit {
            let labels: Vec<usize> = rows.iter().map(|r| r.1).collect();
            let keep = (limit as f64 / rows.len() as f64).min(1.0);
            if keep < 1.0 {
                let (_, subset) = stratified_split(&labels, keep, o.seed ^ 0x5eed);
                rows = subset.into_iter().map(|i| rows[i].clone()).collect();
            }
        }

        let images = ImagePreprocessor::new(config.image.clone());
        let reading = self.bar(rows.len() as u64);
        let (samples, skipped) =
            data::load_samples(&folder, &rows, &images, o.modality.has_image(), &reading);
        for s in &skipped {
            self.say(format!("warning: skipped {}: {}", s.guid, s.reason));
        }
        if !skipped.is_empty() {
            self.say(format!(
                "warning: skipped {} of {} pairs (listed in metrics.json)",
                skipped.len(),
                rows.len()
            ));
        }
        ensure!(
            samples.len() >= 4,
            "too few readable pairs to train on ({})",
            samples.len()
        );

        let labels: Vec<usize> = samples.iter().map(|s| s.label).collect();
        let (train_idx, valid_idx) = stratified_split(&labels, o.val_fraction, o.seed);
        ensure!(
            !valid_idx.is_empty(),
            "the validation split is empty; use more data"
        );
        self.say(format!(
            "{} pairs: {} train, {} validation ({} skipped)",
            samples.len(),
            train_idx.len(),
            valid_idx.len(),
            skipped.len()
        ));

        let text = if o.text_encoder.is_pretrained() {
            let path = encoders::cache::text_tokenizer(o.text_encoder)?;
            let tokenizer = tokenizers::Tokenizer::from_file(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            config.validate()?;
            TextPreprocessor::new(tokenizer, config.text.clone())
                .with_context(|| format!("tokenizer {}", path.display()))?
        } else {
            // The vocabulary comes from the training captions only.
            let tokenizer = train_tokenizer(
                train_idx.iter().map(|&i| samples[i].caption.as_str()),
                o.vocab_size,
            )
            .map_err(anyhow::Error::from)?;
            config.text.vocab_size = tokenizer.get_vocab_size(true);
            config.text.pad_id = tokenizer
                .token_to_id(crate::preprocess::PAD)
                .context("tokenizer lost its padding token")?;
            config.validate()?;
            TextPreprocessor::new(tokenizer, config.text.clone())?
        };
        let (features, feature_timing) = match &pretrained {
            Some(model) => {
                let (features, timing) = self.extract(model, &config, &images, &text, &samples)?;
                (Some(features), Some(timing))
            }
            None => (None, None),
        };
        // Only MiniLM is fine-tuned: a model without the text branch has nothing to fine-tune.
        let finetune = if config.modality.has_text() && o.text_encoder.is_pretrained() {
            o.finetune_layers
        } else {
            0
        };
        let states = match &pretrained {
            Some(model) if finetune > 0 => {
                Some(self.lower_states(model, &config, &text, &samples, finetune)?)
            }
            _ => None,
        };

        let to_examples = |idx: &[usize]| -> Result<Vec<Example>> {
            idx.iter()
                .map(|&i| {
                    let s: &Sample = &samples[i];
                    Ok(match &features {
                        Some(features) => Example {
                            image: None,
                            tokens: Tokens {
                                ids: vec![],
                                len: 0,
                            },
                            features: Some(features[i].clone()),
                            states: states
                                .as_ref()
                                .map(|(from, states)| (*from, states[i].clone())),
                            label: s.label,
                        },
                        None => Example {
                            image: s.image.clone(),
                            tokens: text.encode(&s.caption)?,
                            features: None,
                            states: None,
                            label: s.label,
                        },
                    })
                })
                .collect()
        };
        let train = to_examples(&train_idx)?;
        let valid = to_examples(&valid_idx)?;

        let unk = text
            .tokenizer()
            .token_to_id(crate::preprocess::UNK)
            .context("tokenizer has no [UNK] token")?;
        let (model, history, best_epoch) =
            self.fit(&config, &images, &train, &valid, unk, finetune)?;
        // Heads trained on frozen features go back on top of the pretrained encoders (a
        // fine-tuned model trained with them in place).
        let model = match pretrained {
            Some(pretrained) if finetune == 0 => model.with_encoders_of(pretrained),
            _ => model,
        };

        // Final numbers come from the kept model, evaluated once more.
        let eval = evaluate(&model, &config, &images, &valid)?;
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        let path = |name: &str| -> PathBuf { out_dir.join(name) };
        let model = if o.half_precision {
            model.to_half()
        } else {
            model
        };
        model
            .save_file(path(files::WEIGHTS))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path(files::WEIGHTS).display()))?;
        std::fs::write(path(files::CONFIG), config.to_json())
            .with_context(|| format!("cannot write {}", path(files::CONFIG).display()))?;
        text.tokenizer()
            .save(path(files::TOKENIZER), true)
            .map_err(|e| {
                anyhow::anyhow!("cannot write {}: {e}", path(files::TOKENIZER).display())
            })?;

        let saved_model = if frozen {
            let valid_samples: Vec<&Sample> = valid_idx.iter().map(|&i| &samples[i]).collect();
            Some(self.evaluate_folder(out_dir, &images, &valid_samples)?)
        } else {
            None
        };
        let metrics = MetricsFile {
            validation: eval.fused,
            image_branch: eval.image,
            text_branch: eval.text,
            saved_model,
            features: feature_timing,
            best_epoch,
            epochs_run: history.len(),
            training_seconds: started.elapsed().as_secs_f64(),
            train_pairs: train.len(),
            validation_pairs: valid.len(),
            skipped,
            history,
            options: o.clone(),
            data: data_dir.display().to_string(),
        };
        std::fs::write(
            path(files::METRICS),
            serde_json::to_string_pretty(&metrics)?,
        )
        .with_context(|| format!("cannot write {}", path(files::METRICS).display()))?;
        crate::plots::training_curves(&metrics.history, best_epoch, &path(files::CURVES))?;
        crate::plots::confusion_matrix(&metrics.validation, &path(files::CONFUSION))?;
        Ok(metrics)
    }

    /// Load the model folder just written and classify the validation pairs end to end.
    fn evaluate_folder(
        &self,
        dir: &Path,
        images: &ImagePreprocessor,
        valid: &[&Sample],
    ) -> Result<Metrics> {
        let classifier = crate::Classifier::load(dir, &Device::flex())?;
        let config = classifier.config().clone();
        let bar = self.bar(valid.len() as u64);
        let mut predicted = Vec::with_capacity(valid.len());
        for chunk in valid.chunks(32) {
            let prepared: Vec<crate::inference::Prepared> = chunk
                .iter()
                .map(|s| {
                    let image = config
                        .modality
                        .has_image()
                        .then(|| images.center(s.image.as_ref().expect("picture")));
                    let tokens = config
                        .modality
                        .has_text()
                        .then(|| classifier.text_preprocessor().encode(&s.caption))
                        .transpose()?;
                    Ok(crate::inference::Prepared { image, tokens })
                })
                .collect::<Result<_>>()?;
            for p in classifier.classify_prepared(&prepared)? {
                predicted.push(argmax(&p.fused));
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let actual: Vec<usize> = valid.iter().map(|s| s.label).collect();
        let metrics = Metrics::compute(&config.labels, &actual, &predicted);
        self.say(format!(
            "saved model, end to end on validation: accuracy {:.4}, macro-F1 {:.4}",
            metrics.accuracy, metrics.macro_f1
        ));
        Ok(metrics)
    }

    /// MiniLM's hidden states of every caption below its top `finetune` layers (kept in memory
    /// for this run: they are as long as the caption, unlike the cached features), and the index
    /// of the first fine-tuned layer.
    fn lower_states(
        &self,
        model: &SentimentModel,
        config: &ModelConfig,
        text: &TextPreprocessor,
        samples: &[Sample],
        finetune: usize,
    ) -> Result<(usize, Vec<Vec<f32>>)> {
        use crate::model::TextEncoder;
        let Some(TextEncoder::Pretrained(minilm)) = model.text_branch().map(|b| b.encoder()) else {
            bail!("--finetune-layers needs the pretrained text encoder");
        };
        ensure!(
            finetune <= minilm.layers(),
            "--finetune-layers {finetune}: MiniLM has {} layers",
            minilm.layers()
        );
        let from = minilm.layers() - finetune;
        let device = Device::flex();
        self.say(format!(
            "caption states below MiniLM's top {finetune} layer(s) for {} pairs",
            samples.len()
        ));
        let bar = self.bar(samples.len() as u64);
        let mut out = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(32) {
            let tokens: Vec<Tokens> = chunk
                .iter()
                .map(|s| text.encode(&s.caption))
                .collect::<crate::Result<_>>()?;
            let (ids, mask) = ModelInput::tokens(tokens.iter(), &config.text, &device);
            let states = minilm.hidden_states(ids, mask, from);
            let [_, width, hidden] = states.dims();
            let values = states
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("reading states: {e:?}"))?;
            for (i, t) in tokens.iter().enumerate() {
                out.push(values[i * width * hidden..][..t.len * hidden].to_vec());
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok((from, out))
    }

    /// Frozen-encoder features of every sample (`None` for a branch the model lacks), read from
    /// the feature cache where present and computed (and cached) otherwise.
    fn extract(
        &self,
        model: &SentimentModel,
        config: &ModelConfig,
        images: &ImagePreprocessor,
        text: &TextPreprocessor,
        samples: &[Sample],
    ) -> Result<(Vec<PairFeatures>, FeatureTiming)> {
        let device = Device::flex();
        let mut timing = FeatureTiming {
            pairs: samples.len(),
            ..FeatureTiming::default()
        };
        let mut out: Vec<PairFeatures> = vec![(None, None); samples.len()];

        if config.modality.has_image() {
            let setting = serde_json::to_string(&config.image)?;
            let keys: Vec<u64> = samples
                .iter()
                .map(|s| {
                    let pixels = s.image.as_ref().expect("image samples carry pictures");
                    crate::fnv1a([setting.as_bytes(), pixels.as_raw()])
                })
                .collect();
            let cache = FeatureCache::open(
                config.image.encoder.name(),
                crate::encoders::mobile::FEATURES,
            );
            let (rows, computed, seconds) = self.cached(cache, "image", &keys, |chunk| {
                let pixels: Vec<f32> = chunk
                    .iter()
                    .flat_map(|&i| images.center(samples[i].image.as_ref().expect("picture")))
                    .collect();
                let images = ModelInput::images(pixels, chunk.len(), config.image.size, &device);
                let input = ModelInput {
                    images: Some(images),
                    tokens: None,
                };
                host_rows(model.encode(input).image.expect("image features"))
            })?;
            (timing.image_computed, timing.image_seconds) = (computed, seconds);
            for (pair, row) in out.iter_mut().zip(rows) {
                pair.0 = Some(row);
            }
        }

        if config.modality.has_text() {
            let setting = serde_json::to_string(&config.text)?;
            let keys: Vec<u64> = samples
                .iter()
                .map(|s| crate::fnv1a([setting.as_bytes(), s.caption.as_bytes()]))
                .collect();
            let cache = FeatureCache::open(
                config.text.encoder.name(),
                crate::encoders::MiniLmShape::default().hidden,
            );
            let (rows, computed, seconds) = self.cached(cache, "text", &keys, |chunk| {
                let tokens: Vec<Tokens> = chunk
                    .iter()
                    .map(|&i| text.encode(&samples[i].caption))
                    .collect::<crate::Result<_>>()?;
                let input = ModelInput {
                    images: None,
                    tokens: Some(ModelInput::tokens(tokens.iter(), &config.text, &device)),
                };
                host_rows(model.encode(input).text.expect("text features"))
            })?;
            (timing.text_computed, timing.text_seconds) = (computed, seconds);
            for (pair, row) in out.iter_mut().zip(rows) {
                pair.1 = Some(row);
            }
        }
        Ok((out, timing))
    }

    /// One feature row per key: from `cache` where it has the key, else computed by `encode`
    /// (given sample indices, 32 at a time) and added to it. Also returns how many rows were
    /// computed and how long that took.
    fn cached(
        &self,
        mut cache: FeatureCache,
        what: &str,
        keys: &[u64],
        mut encode: impl FnMut(&[usize]) -> Result<Vec<Vec<f32>>>,
    ) -> Result<(Vec<Vec<f32>>, usize, f64)> {
        let todo: Vec<usize> = (0..keys.len())
            .filter(|&i| cache.get(keys[i]).is_none())
            .collect();
        self.say(format!(
            "{what} features ({}): {} cached, {} to compute",
            cache.path().display(),
            keys.len() - todo.len(),
            todo.len()
        ));
        let started = Instant::now();
        let bar = self.bar(todo.len() as u64);
        for (n, chunk) in todo.chunks(32).enumerate() {
            for (&i, row) in chunk.iter().zip(encode(chunk)?) {
                cache.insert(keys[i], row);
            }
            bar.inc(chunk.len() as u64);
            // Now and then, so an interrupted first run keeps most of its work.
            if n % 20 == 19 {
                cache.save()?;
            }
        }
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        cache.save()?;
        let rows = keys
            .iter()
            .map(|key| cache.get(*key).expect("every key cached").to_vec())
            .collect();
        Ok((rows, todo.len(), seconds))
    }

    /// The epoch loop. Returns the best model (validation snapshot), the history and the best
    /// epoch (1-based).
    fn fit(
        &self,
        config: &ModelConfig,
        images: &ImagePreprocessor,
        train: &[Example],
        valid: &[Example],
        unk: u32,
        finetune: usize,
    ) -> Result<(SentimentModel, Vec<EpochLog>, usize)> {
        let o = &self.options;
        let device = Device::flex().autodiff();
        device.seed(o.seed);
        let mut rng = StdRng::seed_from_u64(o.seed);
        let mut model = config.init(&device);
        if finetune > 0 {
            model = model.with_pretrained_encoders(config)?;
        }
        let mut optim = AdamConfig::new().init();
        let mut encoder_optim = AdamConfig::new().init();

        let k = config.num_classes();
        let mut counts = vec![0usize; k];
        train.iter().for_each(|e| counts[e.label] += 1);
        let majority = *counts.iter().max().unwrap_or(&1) as f64;
        let weights: Vec<f32> = counts
            .iter()
            .map(|&c| (majority / c.max(1) as f64).powf(o.class_weight_power) as f32)
            .collect();
        let loss_fn = CrossEntropyLossConfig::new()
            .with_weights(Some(weights.clone()))
            .init(&device);
        self.say(format!("class weights {weights:.2?}"));

        let mut history = Vec::new();
        let mut best: Option<(f64, usize, SentimentModel)> = None;
        let mut order: Vec<usize> = (0..train.len()).collect();
        let margin = config.image.resize - config.image.size;
        let steps = o.epochs * train.len().div_ceil(o.batch_size);
        let mut step = 0;
        for epoch in 1..=o.epochs {
            let started = Instant::now();
            order.shuffle(&mut rng);
            let batches = order.len().div_ceil(o.batch_size);
            let bar = self.bar(batches as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix:>3} [{bar:30}] {pos}/{len} loss {msg} ({eta})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(epoch.to_string());
            let mut loss_sum = 0.0;
            for (b, chunk) in order.chunks(o.batch_size).enumerate() {
                let batch: Vec<&Example> = chunk.iter().map(|&i| &train[i]).collect();
                // Light augmentation: a random crop of the stored picture, mirrored half the time.
                let crops: Vec<(usize, usize, bool)> = batch
                    .iter()
                    .map(|_| {
                        (
                            rng.random_range(0..=margin),
                            rng.random_range(0..=margin),
                            rng.random_bool(0.5),
                        )
                    })
                    .collect();
                // ... and a few caption tokens hidden behind [UNK].
                let tokens: Vec<Tokens> = batch
                    .iter()
                    .map(|e| {
                        let mut tokens = e.tokens.clone();
                        for id in &mut tokens.ids[..tokens.len] {
                            if rng.random_bool(o.word_dropout) {
                                *id = unk;
                            }
                        }
                        tokens
                    })
                    .collect();
                let input = batch_input(config, images, &batch, Some((&crops, &tokens)), &device);
                let targets = targets(&batch, &device);
                let output = input.run(&model);
                let mut loss = loss_fn.forward(output.fused, targets.clone());
                if config.modality == Modality::Both {
                    let branches = [output.image, output.text].into_iter().flatten();
                    for logits in branches {
                        let branch = loss_fn.forward(logits, targets.clone());
                        loss = loss + branch * o.branch_loss_weight;
                    }
                }
                let value = loss.clone().into_scalar::<f32>() as f64;
                ensure!(
                    value.is_finite(),
                    "training diverged (loss {value}) at epoch {epoch}"
                );
                loss_sum += value;
                let mut grads = loss.backward();
                // Cosine decay to 5 % of the initial rate over the epoch budget.
                let progress = step as f64 / steps.max(1) as f64;
                let decay = 0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                step += 1;
                if finetune > 0 {
                    // Pretrained layers move with a much smaller step than the fresh heads.
                    let branch = model.text_branch().expect("fine-tuning has a text branch");
                    let encoder = GradientsParams::from_module(&mut grads, branch.encoder());
                    model = encoder_optim.step(o.finetune_lr * decay, model, encoder);
                }
                let grads = GradientsParams::from_grads(grads, &model);
                model = optim.step(o.lr * decay, model, grads);
                bar.set_message(format!("{:.4}", loss_sum / (b + 1) as f64));
                bar.inc(1);
            }
            bar.finish_and_clear();

            let snapshot = model.valid();
            let eval = evaluate(&snapshot, config, images, valid)?;
            let log = EpochLog {
                epoch,
                train_loss: loss_sum / batches as f64,
                val_loss: eval.loss,
                val_accuracy: eval.fused.accuracy,
                val_macro_f1: eval.fused.macro_f1,
                seconds: started.elapsed().as_secs_f64(),
            };
            let score = match o.select {
                Selection::Accuracy => log.val_accuracy,
                Selection::MacroF1 => log.val_macro_f1,
            };
            let improved = best.as_ref().is_none_or(|(s, _, _)| score > *s);
            self.say(format!(
                "epoch {epoch:>3}  train loss {:.4}  val loss {:.4}  acc {:.4}  macro-F1 {:.4}  {:.1}s{}",
                log.train_loss,
                log.val_loss,
                log.val_accuracy,
                log.val_macro_f1,
                log.seconds,
                if improved { "  *" } else { "" }
            ));
            history.push(log);
            if improved {
                best = Some((score, epoch, snapshot));
            } else if epoch - best.as_ref().map_or(0, |b| b.1) >= o.patience {
                self.say(format!(
                    "early stop: no better validation score for {} epochs",
                    o.patience
                ));
                break;
            }
        }
        let Some((_, best_epoch, model)) = best else {
            bail!("no epoch was run");
        };
        self.say(format!("kept epoch {best_epoch}"));
        Ok((model, history, best_epoch))
    }
}

/// A `[rows, dim]` tensor as one `Vec` per row.
fn host_rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, dim] = t.dims();
    let values = t
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading features: {e:?}"))?;
    Ok(values.chunks(dim).map(<[f32]>::to_vec).collect())
}

fn targets(batch: &[&Example], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = batch.iter().map(|e| e.label as i64).collect();
    Tensor::from_data(TensorData::new(labels, [batch.len()]), device)
}

/// (left, top, mirror) crop of each picture and the (noisy) tokens of each caption.
type Augmented<'a> = (&'a [(usize, usize, bool)], &'a [Tokens]);

/// A batch as the model takes it: raw inputs, features of frozen encoders, or image features
/// with MiniLM states below its fine-tuned layers.
enum Batch {
    Inputs(ModelInput),
    Features(Features),
    States {
        image: Option<Tensor<2>>,
        states: Tensor<3>,
        mask: Tensor<2>,
        from: usize,
    },
}

impl Batch {
    fn run(self, model: &SentimentModel) -> ModelOutput {
        match self {
            Batch::Inputs(input) => model.forward(input),
            Batch::Features(features) => model.forward_features(features),
            Batch::States {
                image,
                states,
                mask,
                from,
            } => {
                let text = model.text_features_from_states(states, mask, from);
                model.forward_features(Features {
                    image,
                    text: Some(text),
                })
            }
        }
    }
}

/// Tensors for a batch: augmented, or `None` for the centre crop and the clean captions.
fn batch_input(
    config: &ModelConfig,
    images: &ImagePreprocessor,
    batch: &[&Example],
    augmented: Option<Augmented>,
    device: &Device,
) -> Batch {
    if batch.iter().all(|e| e.features.is_some()) {
        let stack = |part: fn(&Example) -> Option<&Vec<f32>>| -> Option<Tensor<2>> {
            let rows: Option<Vec<&Vec<f32>>> = batch.iter().map(|e| part(e)).collect();
            let rows = rows?;
            let dim = rows.first()?.len();
            let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
            Some(Tensor::from_data(
                TensorData::new(flat, [batch.len(), dim]),
                device,
            ))
        };
        let image = stack(|e| e.features.as_ref()?.0.as_ref());
        if batch.iter().all(|e| e.states.is_some()) {
            let hidden = crate::encoders::MiniLmShape::default().hidden;
            let lens: Vec<usize> = batch
                .iter()
                .map(|e| e.states.as_ref().expect("states").1.len() / hidden)
                .collect();
            let width = lens.iter().copied().max().unwrap_or(1).max(1);
            let mut flat = vec![0.0f32; batch.len() * width * hidden];
            let mut mask = vec![0.0f32; batch.len() * width];
            for (i, e) in batch.iter().enumerate() {
                let states = &e.states.as_ref().expect("states").1;
                flat[i * width * hidden..][..states.len()].copy_from_slice(states);
                mask[i * width..][..lens[i]].fill(1.0);
            }
            let from = batch[0].states.as_ref().expect("states").0;
            return Batch::States {
                image,
                states: Tensor::from_data(
                    TensorData::new(flat, [batch.len(), width, hidden]),
                    device,
                ),
                mask: Tensor::from_data(TensorData::new(mask, [batch.len(), width]), device),
                from,
            };
        }
        return Batch::Features(Features {
            image,
            text: stack(|e| e.features.as_ref()?.1.as_ref()),
        });
    }
    let images = config.modality.has_image().then(|| {
        let pixels: Vec<f32> = batch
            .iter()
            .enumerate()
            .flat_map(|(i, e)| {
                let stored = e
                    .image
                    .as_ref()
                    .expect("image branch examples carry images");
                match augmented {
                    Some((c, _)) => images.crop(stored, c[i].0, c[i].1, c[i].2),
                    None => images.center(stored),
                }
            })
            .collect();
        ModelInput::images(pixels, batch.len(), config.image.size, device)
    });
    let tokens = config
        .modality
        .has_text()
        .then(|| ModelInput::tokens(batch.iter().map(|e| &e.tokens), &config.text, device));
    Batch::Inputs(ModelInput { images, tokens })
}

struct Evaluation {
    loss: f64,
    fused: Metrics,
    image: Option<Metrics>,
    text: Option<Metrics>,
}

/// Validation metrics of the fused output and of each branch head, plus the mean
/// (unweighted) cross-entropy of the fused output.
fn evaluate(
    model: &SentimentModel,
    config: &ModelConfig,
    images: &ImagePreprocessor,
    valid: &[Example],
) -> Result<Evaluation> {
    let device = Device::flex();
    let k = config.num_classes();
    let host = |t: Tensor<2>| -> Result<Vec<f32>> {
        softmax(t, 1)
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading probabilities: {e:?}"))
    };
    let (mut fused, mut image, mut text) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in valid.chunks(64) {
        let batch: Vec<&Example> = chunk.iter().collect();
        let output = batch_input(config, images, &batch, None, &device).run(model);
        fused.extend(host(output.fused)?);
        if let Some(t) = output.image {
            image.extend(host(t)?);
        }
        if let Some(t) = output.text {
            text.extend(host(t)?);
        }
    }
    let actual: Vec<usize> = valid.iter().map(|e| e.label).collect();
    let predicted = |probs: &[f32]| -> Vec<usize> { probs.chunks(k).map(argmax).collect() };
    let loss = fused
        .chunks(k)
        .zip(&actual)
        .map(|(p, &a)| -(p[a].max(1e-7) as f64).ln())
        .sum::<f64>()
        / valid.len() as f64;
    let metrics = |probs: &[f32]| Metrics::compute(&config.labels, &actual, &predicted(probs));
    let branches = config.modality == Modality::Both;
    Ok(Evaluation {
        loss,
        fused: metrics(&fused),
        image: (branches && !image.is_empty()).then(|| metrics(&image)),
        text: (branches && !text.is_empty()).then(|| metrics(&text)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_seeded_and_disjoint() {
        let labels: Vec<usize> = (0..100)
            .map(|i| {
                if i < 60 {
                    2
                } else if i < 90 {
                    0
                } else {
                    1
                }
            })
            .collect();
        let (train, valid) = stratified_split(&labels, 0.2, 7);
        assert_eq!(train.len() + valid.len(), 100);
        assert!(valid.iter().all(|i| !train.contains(i)));
        let count = |idx: &[usize], c| idx.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!(
            (count(&valid, 0), count(&valid, 1), count(&valid, 2)),
            (6, 2, 12)
        );
        assert_eq!(
            stratified_split(&labels, 0.2, 7),
            (train.clone(), valid.clone())
        );
        assert_ne!(stratified_split(&labels, 0.2, 8).1, valid);
    }
}
