//! A training run, stage by stage: read the lab folder, split it, build the caption tokenizer,
//! compute what the regime trains on, fit, then write the model folder and its report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::prelude::Device;
use mvsa_model::config::TextEncoderConfig;
use mvsa_model::folder::ModelFiles;
use mvsa_model::metrics::Metrics;
use mvsa_model::model::SentimentModel;
use mvsa_model::preprocess::{ImagePreprocessor, TextPreprocessor};
use mvsa_model::{Classifier, ModelConfig, Prepared};

use crate::data::{self, LabFolder, Sample, Skipped};
use crate::pretrained::EncoderFiles;
use crate::progress::Progress;
use crate::report::{self, MetricsFile};
use crate::tokenizer;
use crate::training::finetune::{FineTune, States};
use crate::training::fit::{self, Evaluation, Labelled};
use crate::training::heads::{Features, Heads};
use crate::training::scratch::Scratch;
use crate::training::split::{stratified_split, stratified_subset};
use crate::training::{EpochLog, FeatureTiming, Regime, TrainingConfig, inputs};

pub struct Trainer<'a> {
    pub config: TrainingConfig,
    /// The pretrained encoders' original files.
    pub encoders: EncoderFiles,
    /// Folder of the frozen encoders' feature cache.
    pub feature_cache: PathBuf,
    /// Where training and evaluation run (a CPU device; training adds autodiff to it).
    pub device: Device,
    pub progress: &'a dyn Progress,
}

/// The pairs that could be read, split into training and validation.
struct Dataset {
    samples: Vec<Sample>,
    skipped: Vec<Skipped>,
    /// Whether each sample is held out for validation.
    held_out: Vec<bool>,
}

/// What fitting gave, whatever the regime.
struct Trained {
    model: SentimentModel,
    history: Vec<EpochLog>,
    best_epoch: usize,
    evaluation: Evaluation,
    features: Option<FeatureTiming>,
}

impl Trainer<'_> {
    /// Train on the lab folder `data_dir` and write the model folder `out_dir`.
    pub fn run(&self, data_dir: &Path, out_dir: &Path) -> Result<MetricsFile> {
        let started = Instant::now();
        let regime = self.config.regime()?;
        // A missing fetch fails here, before anything slow.
        self.encoders.check(&self.config.model)?;
        let data = self.read(data_dir)?;
        let (config, text) = self.tokenizer(&data)?;
        let trained = match regime {
            Regime::Scratch => self.scratch(&config, text.as_ref(), &data)?,
            Regime::Heads => self.heads(&config, text.as_ref(), &data)?,
            Regime::FineTune { layers } => self.finetune(&config, text.as_ref(), &data, layers)?,
        };
        self.write_folder(out_dir, &config, text.as_ref(), &trained)?;
        let saved = self.evaluate_folder(out_dir, &data)?;
        let metrics = self.metrics(data_dir, data, trained, saved, started);
        report::write(out_dir, &metrics)?;
        Ok(metrics)
    }

    /// What the run measured, as `metrics.json` records it.
    fn metrics(
        &self,
        data_dir: &Path,
        data: Dataset,
        trained: Trained,
        saved: Metrics,
        started: Instant,
    ) -> MetricsFile {
        MetricsFile {
            validation: trained.evaluation.fused,
            image_branch: trained.evaluation.image,
            text_branch: trained.evaluation.text,
            saved_model: Some(saved),
            features: trained.features,
            best_epoch: trained.best_epoch,
            epochs_run: trained.history.len(),
            training_seconds: started.elapsed().as_secs_f64(),
            train_pairs: data.held_out.iter().filter(|v| !**v).count(),
            validation_pairs: data.held_out.iter().filter(|v| **v).count(),
            skipped: data.skipped,
            history: trained.history,
            options: self.config.options.clone(),
            data: data_dir.display().to_string(),
        }
    }

    /// Read the labelled pairs (a stratified subset with `limit`) and split them.
    fn read(&self, data_dir: &Path) -> Result<Dataset> {
        let o = &self.config.options;
        let folder = LabFolder::open(data_dir)?;
        let list = folder.root().join(data::TRAIN_LIST);
        let rows = data::read_list(&list)?;
        let mut rows = data::labelled(&list, &rows, &self.config.model)?;
        ensure!(
            !rows.is_empty(),
            "{} lists no labelled pairs",
            list.display()
        );
        if let Some(limit) = o.limit {
            let labels: Vec<usize> = rows.iter().map(|r| r.1).collect();
            let subset = stratified_subset(&labels, limit, o.seed);
            rows = subset.into_iter().map(|i| rows[i].clone()).collect();
        }
        let images = self.config.model.image.as_ref();
        let images = images.map(|b| ImagePreprocessor::new(b.preprocess.clone()));
        let (samples, skipped) = data::load_samples(&folder, &rows, images.as_ref(), self.progress);
        for s in &skipped {
            self.progress
                .note(&format!("warning: skipped {}: {}", s.guid, s.reason));
        }
        if !skipped.is_empty() {
            self.progress.note(&format!(
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
        let (train, valid) = stratified_split(&labels, o.val_fraction, o.seed);
        ensure!(
            !valid.is_empty(),
            "the validation split is empty; use more data"
        );
        self.progress.note(&format!(
            "{} pairs: {} train, {} validation ({} skipped)",
            samples.len(),
            train.len(),
            valid.len(),
            skipped.len()
        ));
        let mut held_out = vec![false; samples.len()];
        valid.iter().for_each(|&i| held_out[i] = true);
        Ok(Dataset {
            samples,
            skipped,
            held_out,
        })
    }

    /// The caption tokenizer: the pretrained encoder's own, or one learned from the training
    /// captions (which fixes the scratch model's vocabulary size). The config it goes with.
    fn tokenizer(&self, data: &Dataset) -> Result<(ModelConfig, Option<TextPreprocessor>)> {
        let mut config = self.config.model.clone();
        let Some(branch) = config.text.as_mut() else {
            return Ok((config, None));
        };
        let tokenizer = match &mut branch.encoder {
            TextEncoderConfig::MinilmL6(_) => self.encoders.minilm_tokenizer()?,
            TextEncoderConfig::Scratch { vocab_size, .. } => {
                let captions = data.train_samples().map(|s| s.caption.as_str());
                let learned = tokenizer::train_tokenizer(captions, *vocab_size)?;
                *vocab_size = learned.get_vocab_size(true);
                branch.preprocess.pad_id = learned
                    .token_to_id(tokenizer::PAD)
                    .context("the tokenizer lost its padding token")?;
                learned
            }
        };
        let text = TextPreprocessor::new(tokenizer, branch.clone())?;
        config.validate()?;
        Ok((config, Some(text)))
    }

    fn scratch(
        &self,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        data: &Dataset,
    ) -> Result<Trained> {
        let regime = Scratch::new(config, text, self.config.options.word_dropout)?;
        let inputs = regime.inputs(&data.samples)?;
        self.fit(regime, inputs, data, None)
    }

    fn heads(
        &self,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        data: &Dataset,
    ) -> Result<Trained> {
        let image = match &config.image {
            Some(b) => self.encoders.image_encoder(&b.encoder, &self.device)?,
            None => None,
        };
        let text_encoder = match &config.text {
            Some(b) => self.encoders.text_encoder(&b.encoder, &self.device)?,
            None => None,
        };
        let mut timing = FeatureTiming {
            pairs: data.samples.len(),
            ..FeatureTiming::default()
        };
        let mut features: Vec<Features> = vec![
            Features {
                image: None,
                text: None
            };
            data.samples.len()
        ];
        if let (Some(encoder), Some(branch)) = (&image, &config.image) {
            let computed = inputs::image_features(
                encoder,
                branch,
                &data.samples,
                &self.feature_cache,
                &self.device,
                self.progress,
            )?;
            (timing.image_computed, timing.image_seconds) = (computed.computed, computed.seconds);
            features
                .iter_mut()
                .zip(computed.rows)
                .for_each(|(f, row)| f.image = Some(row));
        }
        if let (Some(encoder), Some(branch), Some(text)) = (&text_encoder, &config.text, text) {
            let computed = inputs::text_features(
                encoder,
                branch,
                text,
                &data.samples,
                &self.feature_cache,
                &self.device,
                self.progress,
            )?;
            (timing.text_computed, timing.text_seconds) = (computed.computed, computed.seconds);
            features
                .iter_mut()
                .zip(computed.rows)
                .for_each(|(f, row)| f.text = Some(row));
        }
        let pretrained = config.init_with(image, text_encoder, &self.device)?;
        self.fit(Heads::new(config, pretrained), features, data, Some(timing))
    }

    fn finetune(
        &self,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        data: &Dataset,
        layers: usize,
    ) -> Result<Trained> {
        let (Some(text), Some(TextEncoderConfig::MinilmL6(shape))) =
            (text, config.text.as_ref().map(|b| &b.encoder))
        else {
            anyhow::bail!("fine-tuning needs the MiniLM caption encoder");
        };
        let mut timing = FeatureTiming {
            pairs: data.samples.len(),
            ..FeatureTiming::default()
        };
        let (image, image_rows) = match &config.image {
            Some(branch) => {
                let encoder = self.encoders.image_encoder(&branch.encoder, &self.device)?;
                let computed = match &encoder {
                    Some(e) => Some(inputs::image_features(
                        e,
                        branch,
                        &data.samples,
                        &self.feature_cache,
                        &self.device,
                        self.progress,
                    )?),
                    None => None,
                };
                if let Some(c) = &computed {
                    (timing.image_computed, timing.image_seconds) = (c.computed, c.seconds);
                }
                (encoder, computed.map(|c| c.rows))
            }
            None => (None, None),
        };
        let minilm = self.encoders.minilm(shape, &self.device)?;
        let lr = self.config.options.finetune_lr;
        let regime = FineTune::new(config, image, minilm, layers, lr, &self.device);
        let states = inputs::lower_states(
            regime.lower(),
            text,
            &data.samples,
            &self.device,
            self.progress,
        )?;
        let mut image_rows = image_rows.map(Vec::into_iter);
        let examples = states
            .into_iter()
            .map(|states| States {
                image: image_rows.as_mut().and_then(Iterator::next),
                states,
            })
            .collect();
        self.fit(regime, examples, data, Some(timing))
    }

    fn fit<R: fit::Regime>(
        &self,
        regime: R,
        inputs: Vec<R::Example>,
        data: &Dataset,
        features: Option<FeatureTiming>,
    ) -> Result<Trained> {
        let (mut train, mut valid) = (Vec::new(), Vec::new());
        for ((input, sample), &held_out) in
            inputs.into_iter().zip(&data.samples).zip(&data.held_out)
        {
            let example = Labelled {
                input,
                label: sample.label,
            };
            if held_out {
                valid.push(example)
            } else {
                train.push(example)
            }
        }
        let labels = &self.config.model.labels;
        let options = &self.config.options;
        let fitted = fit::fit(
            &regime,
            &train,
            &valid,
            labels,
            options,
            &self.device,
            self.progress,
        )?;
        Ok(Trained {
            model: regime.finish(fitted.model)?,
            history: fitted.history,
            best_epoch: fitted.best_epoch,
            evaluation: fitted.evaluation,
            features,
        })
    }

    /// Weights (in the format the options ask for), config and tokenizer into `out_dir`.
    fn write_folder(
        &self,
        out_dir: &Path,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        trained: &Trained,
    ) -> Result<()> {
        let model = trained.model.clone().stored_as(self.config.options.weights);
        let weights = model
            .into_record()
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("cannot serialise the weights: {e}"))?
            .to_vec();
        let tokenizer = match text {
            Some(text) => Some(
                text.tokenizer()
                    .to_string(true)
                    .map_err(anyhow::Error::msg)?
                    .into_bytes(),
            ),
            None => None,
        };
        let files = ModelFiles {
            config: config.clone(),
            tokenizer,
            weights,
        };
        files
            .write(out_dir)
            .with_context(|| format!("cannot write the model folder {}", out_dir.display()))
    }

    /// Load the folder just written and classify the validation pairs end to end, with the
    /// classifier the page and `predict` use.
    fn evaluate_folder(&self, dir: &Path, data: &Dataset) -> Result<Metrics> {
        let classifier = Classifier::load(dir, &self.device)?;
        let images = classifier.image_preprocessor();
        let valid: Vec<&Sample> = data.valid_samples().collect();
        self.progress.begin("saved model", valid.len());
        let mut scores = Vec::with_capacity(valid.len());
        for chunk in valid.chunks(32) {
            let prepared = chunk
                .iter()
                .map(|s| {
                    let image = images
                        .zip(s.image.as_ref())
                        .map(|(pre, stored)| pre.center(stored));
                    let tokens = classifier
                        .text_preprocessor()
                        .map(|t| t.encode(&s.caption))
                        .transpose()?;
                    Ok(Prepared { image, tokens })
                })
                .collect::<Result<Vec<_>>>()?;
            scores.extend(classifier.run(&prepared)?.into_iter().map(|p| p.scores));
            self.progress.advance(chunk.len(), None);
        }
        self.progress.finish();
        let actual: Vec<usize> = valid.iter().map(|s| s.label).collect();
        let labels = &classifier.config().labels;
        let metrics = Evaluation::new(labels, &scores, &actual).fused;
        self.progress.note(&format!(
            "saved model, end to end on validation: accuracy {:.4}, macro-F1 {:.4}",
            metrics.accuracy, metrics.macro_f1
        ));
        Ok(metrics)
    }
}

impl Dataset {
    fn train_samples(&self) -> impl Iterator<Item = &Sample> + Clone + Send {
        self.samples
            .iter()
            .zip(&self.held_out)
            .filter(|(_, v)| !**v)
            .map(|(s, _)| s)
    }

    fn valid_samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .zip(&self.held_out)
            .filter(|(_, v)| **v)
            .map(|(s, _)| s)
    }
}
