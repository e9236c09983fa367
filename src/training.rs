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
use crate::files;
use crate::metrics::{Metrics, argmax};
use crate::model::{ModelInput, SentimentModel};
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
    pub vocab_size: usize,
    pub max_len: usize,
    pub image_size: usize,
    pub dropout: f64,
    /// Share of caption tokens replaced by `[UNK]` in each training batch (augmentation).
    pub word_dropout: f64,
}

impl Default for TrainingOptions {
    fn default() -> Self {
        Self {
            modality: Modality::Both,
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

/// A training pair ready for batching.
struct Example {
    image: Option<image::RgbImage>,
    tokens: Tokens,
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
        let mut config = ModelConfig::new(o.modality, 1);
        config.text.max_len = o.max_len;
        config.image.size = o.image_size;
        config.image.resize = o.image_size + o.image_size / 8;
        config.dropout = o.dropout;

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
        let text = TextPreprocessor::new(tokenizer, config.text.clone())?;

        let to_examples = |idx: &[usize]| -> Result<Vec<Example>> {
            idx.iter()
                .map(|&i| {
                    let s: &Sample = &samples[i];
                    Ok(Example {
                        image: s.image.clone(),
                        tokens: text.encode(&s.caption)?,
                        label: s.label,
                    })
                })
                .collect()
        };
        let train = to_examples(&train_idx)?;
        let valid = to_examples(&valid_idx)?;

        let unk = text
            .tokenizer()
            .token_to_id(crate::preprocess::UNK)
            .context("tokenizer lost its unknown token")?;
        let (model, history, best_epoch) = self.fit(&config, &images, &train, &valid, unk)?;

        // Final numbers come from the kept model, evaluated once more.
        let eval = evaluate(&model, &config, &images, &valid)?;
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        let path = |name: &str| -> PathBuf { out_dir.join(name) };
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

        let metrics = MetricsFile {
            validation: eval.fused,
            image_branch: eval.image,
            text_branch: eval.text,
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

    /// The epoch loop. Returns the best model (validation snapshot), the history and the best
    /// epoch (1-based).
    fn fit(
        &self,
        config: &ModelConfig,
        images: &ImagePreprocessor,
        train: &[Example],
        valid: &[Example],
        unk: u32,
    ) -> Result<(SentimentModel, Vec<EpochLog>, usize)> {
        let o = &self.options;
        let device = Device::flex().autodiff();
        device.seed(o.seed);
        let mut rng = StdRng::seed_from_u64(o.seed);
        let mut model = config.init(&device);
        let mut optim = AdamConfig::new().init();

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
                let output = model.forward(input);
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
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                // Cosine decay to 5 % of the initial rate over the epoch budget.
                let progress = step as f64 / steps.max(1) as f64;
                let lr =
                    o.lr * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
                step += 1;
                model = optim.step(lr, model, grads);
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

fn targets(batch: &[&Example], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = batch.iter().map(|e| e.label as i64).collect();
    Tensor::from_data(TensorData::new(labels, [batch.len()]), device)
}

/// (left, top, mirror) crop of each picture and the (noisy) tokens of each caption.
type Augmented<'a> = (&'a [(usize, usize, bool)], &'a [Tokens]);

/// Tensors for a batch: augmented, or `None` for the centre crop and the clean captions.
fn batch_input(
    config: &ModelConfig,
    images: &ImagePreprocessor,
    batch: &[&Example],
    augmented: Option<Augmented>,
    device: &Device,
) -> ModelInput {
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
        .then(|| ModelInput::tokens(batch.iter().map(|e| &e.tokens), config.text.max_len, device));
    ModelInput { images, tokens }
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
        let output = model.forward(batch_input(config, images, &batch, None, &device));
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
