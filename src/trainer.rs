//! A training run, stage by stage: read the lab folder, split it, build the caption tokenizer,
//! compute what the regime trains on, fit, then write the model folder and its report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::prelude::Device;
use mvsa_model::config::{ImageBranchConfig, TextEncoderConfig};
use mvsa_model::folder::ModelFiles;
use mvsa_model::metrics::Metrics;
use mvsa_model::model::{ImageEncoder, SentimentModel};
use mvsa_model::preprocess::{self, ImagePreprocessor, TextPreprocessor};
use mvsa_model::{Classifier, ModelConfig, Prepared};

use crate::data::{self, LabFolder, Sample, Skipped};
use crate::pretrained::EncoderFiles;
use crate::progress::Progress;
use crate::report::{self, MetricsFile};
use crate::staging::Staging;
use crate::tokenizer;
use crate::training::cv::{self, CrossValidation};
use crate::training::evaluate::{self, Evaluation};
use crate::training::finetune::{Activations, FineTune, States};
use crate::training::fit::{self, Labelled, Stop};
use crate::training::heads::{Features, Heads};
use crate::training::mixed::Mixed;
use crate::training::scratch::Scratch;
use crate::training::split::{stratified_split, stratified_subset};
use crate::training::{EpochLog, FeatureTiming, Regime, TrainingConfig, TrainingOptions, inputs};

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
    /// The run's epochs; cross-validated, the folds' mean curve.
    history: Vec<EpochLog>,
    /// The kept epoch; cross-validated, the epoch count the folds chose.
    best_epoch: usize,
    /// Epochs the model that ships was trained for.
    epochs_run: usize,
    /// The kept epoch on the validation split; cross-validated, every pair's out-of-fold
    /// prediction pooled.
    evaluation: Evaluation,
    features: Option<FeatureTiming>,
    cross_validation: Option<CrossValidation>,
    /// The pairs the written folder is checked on, and the trained model's numbers on them.
    check: Vec<usize>,
    check_metrics: Metrics,
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
            Regime::Mixed => self.mixed(&config, text.as_ref(), &data)?,
            Regime::FineTune {
                layers,
                image_layers,
            } => self.finetune(&config, text.as_ref(), &data, (layers, image_layers))?,
        };
        // Written and checked beside `out_dir`, then swapped in: a failed or interrupted run
        // leaves the previous folder whole.
        let staging = Staging::new(out_dir)?;
        self.write_folder(staging.dir(), &config, text.as_ref(), &trained)?;
        let saved = self.evaluate_folder(staging.dir(), &data, &trained.check)?;
        let metrics = self.metrics(data_dir, data, trained, saved, started);
        report::write(staging.dir(), &metrics)?;
        let out_dir = staging.commit()?;
        report::register_if_listed(&out_dir)?;
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
        let cross_validated = trained.cross_validation.is_some();
        let held_out = data.held_out.iter().filter(|v| **v).count();
        MetricsFile {
            validation: trained.evaluation.fused,
            image_branch: trained.evaluation.image,
            text_branch: trained.evaluation.text,
            saved_model: Some(saved),
            trained_model: Some(trained.check_metrics),
            cross_validation: trained.cross_validation,
            features: trained.features,
            best_epoch: trained.best_epoch,
            epochs_run: trained.epochs_run,
            training_seconds: started.elapsed().as_secs_f64(),
            train_pairs: data.samples.len() - held_out,
            validation_pairs: if cross_validated {
                data.samples.len()
            } else {
                held_out
            },
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
        // Cross-validation holds out each fold in turn, then trains on every pair.
        let (train, valid) = match o.cv {
            Some(_) => ((0..samples.len()).collect(), Vec::new()),
            None => stratified_split(&labels, o.val_fraction, o.seed),
        };
        ensure!(
            !valid.is_empty() || o.cv.is_some(),
            "the validation split is empty; use more data"
        );
        self.progress.note(&format!(
            "{} pairs: {} train, {} validation ({} skipped){}",
            samples.len(),
            train.len(),
            valid.len(),
            skipped.len(),
            o.cv.map_or(String::new(), |k| format!(
                "; {k}-fold cross-validation first"
            ))
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
                let settings = &branch.preprocess;
                let captions: Vec<String> = data
                    .train_samples()
                    .map(|s| preprocess::normalise(settings, &s.caption).into_owned())
                    .collect();
                let learned =
                    tokenizer::train_tokenizer(captions.iter().map(String::as_str), *vocab_size)?;
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

    /// The frozen picture encoder's features, computed once (or read from the cache), beside
    /// the scratch caption encoder's tokens.
    fn mixed(
        &self,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        data: &Dataset,
    ) -> Result<Trained> {
        let (Some(branch), Some(text)) = (&config.image, text) else {
            anyhow::bail!("the mixed regime needs a picture and a caption branch");
        };
        let encoder = (self.encoders.image_encoder(&branch.encoder, &self.device)?)
            .context("the picture encoder is not a pretrained one")?;
        let computed = self.image_inputs(&encoder, branch, data)?;
        let timing = FeatureTiming {
            pairs: data.samples.len(),
            image_computed: computed.computed,
            image_seconds: computed.seconds,
            ..FeatureTiming::default()
        };
        let o = &self.config.options;
        let regime = Mixed::new(config, encoder, text, o.word_dropout, &self.device)?;
        let inputs = regime.inputs(&data.samples, computed.rows)?;
        self.fit(regime, inputs, data, Some(timing))
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
            let computed = self.image_inputs(encoder, branch, data)?;
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
        (layers, image_layers): (usize, usize),
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
        let image = match &config.image {
            Some(branch) => self.encoders.image_encoder(&branch.encoder, &self.device)?,
            None => None,
        };
        // Frozen, the picture encoder's pooled features; fine-tuned, the regime's lower blocks'
        // activations (below).
        let mut pictures = match (&image, &config.image, image_layers) {
            (Some(encoder), Some(branch), 0) => {
                let c = self.image_inputs(encoder, branch, data)?;
                (timing.image_computed, timing.image_seconds) = (c.computed, c.seconds);
                let pooled = |row: Vec<f32>| Activations {
                    shape: [row.len(), 1, 1],
                    centre: row,
                    mirrored: None,
                };
                Some(c.rows.into_iter().map(pooled).collect::<Vec<_>>())
            }
            _ => None,
        };
        let minilm = self.encoders.minilm(shape, &self.device)?;
        let o = &self.config.options;
        let regime = FineTune::new(
            config,
            image,
            (image_layers, o.finetune_image_lr),
            minilm,
            (layers, o.finetune_lr),
            &self.device,
        )?
        .with_mirror_tta(o.mirror_tta);
        if let (Some(lower), Some(branch)) = (regime.image_lower(), &config.image) {
            let (cache, device) = (&self.feature_cache, &self.device);
            let both = inputs::picture_activations(
                lower,
                branch,
                &data.samples,
                cache,
                device,
                self.progress,
            )?;
            (timing.image_computed, timing.image_seconds) = (both.computed, both.seconds);
            pictures = Some(both.rows);
        }
        let branch = config
            .text
            .as_ref()
            .context("fine-tuning needs a caption branch")?;
        let states = inputs::lower_states(
            regime.lower(),
            branch,
            text,
            &data.samples,
            &self.feature_cache,
            &self.device,
            self.progress,
        )?;
        (timing.text_computed, timing.text_seconds) = (states.computed, states.seconds);
        let mut pictures = pictures.map(Vec::into_iter);
        let examples = states
            .rows
            .into_iter()
            .map(|states| States {
                image: pictures.as_mut().and_then(Iterator::next),
                states,
            })
            .collect();
        self.fit(regime, examples, data, Some(timing))
    }

    fn image_inputs(
        &self,
        encoder: &ImageEncoder,
        branch: &ImageBranchConfig,
        data: &Dataset,
    ) -> Result<inputs::Computed> {
        inputs::image_features(
            encoder,
            branch,
            &data.samples,
            &self.feature_cache,
            &self.device,
            self.progress,
        )
    }

    /// Fit `regime` on `inputs` (one per sample): on the training split, keeping the best
    /// validation epoch; or, cross-validated, on every pair for the epoch count the folds chose.
    fn fit<R: fit::Regime>(
        &self,
        regime: R,
        inputs: Vec<R::Example>,
        data: &Dataset,
        features: Option<FeatureTiming>,
    ) -> Result<Trained> {
        let examples: Vec<Labelled<R::Example>> = inputs
            .into_iter()
            .zip(&data.samples)
            .map(|(input, sample)| Labelled {
                input,
                label: sample.label,
            })
            .collect();
        let pick = |held_out: bool| -> Vec<&Labelled<R::Example>> {
            let both = examples.iter().zip(&data.held_out);
            both.filter(|(_, h)| **h == held_out)
                .map(|(e, _)| e)
                .collect()
        };
        let (labels, options, progress) = (
            &self.config.model.labels,
            &self.config.options,
            self.progress,
        );
        let fit_on = |train: &[&Labelled<R::Example>], valid: &[&Labelled<R::Example>], stop| {
            fit::fit(
                &regime,
                train,
                valid,
                labels,
                options,
                stop,
                &self.device,
                progress,
            )
        };
        let (fitted, cv) = match options.cv {
            None => (
                fit_on(&pick(false), &pick(true), Stop::BestValidation)?,
                None,
            ),
            Some(k) => {
                let cv = cv::cross_validate(
                    &regime,
                    &examples,
                    k,
                    labels,
                    options,
                    &self.device,
                    progress,
                )?;
                progress.note(&cv_line(&cv.record));
                let fitted = fit_on(&pick(false), &[], Stop::After(cv.record.epochs))?;
                (fitted, Some(cv))
            }
        };
        let check = data.check_pairs(options);
        let on_check: Vec<&Labelled<R::Example>> = check.iter().map(|&i| &examples[i]).collect();
        let check_metrics =
            evaluate::evaluate_as_shipped(&regime, &fitted.model, &on_check, labels, &self.device)?
                .fused;
        let epochs_run = fitted.history.len();
        let (history, best_epoch, evaluation, cross_validation) = match cv {
            Some(cv) => (cv.curve, cv.record.epochs, cv.pooled, Some(cv.record)),
            None => {
                let evaluation = fitted
                    .evaluation()
                    .cloned()
                    .context("no epoch was evaluated")?;
                (fitted.history, fitted.best_epoch, evaluation, None)
            }
        };
        Ok(Trained {
            model: regime.finish(fitted.model)?,
            history,
            best_epoch,
            epochs_run,
            evaluation,
            features,
            cross_validation,
            check,
            check_metrics,
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

    /// Load the folder just written and classify the `check` pairs end to end, with the
    /// classifier the page and `predict` use.
    fn evaluate_folder(&self, dir: &Path, data: &Dataset, check: &[usize]) -> Result<Metrics> {
        let classifier = Classifier::load(dir, &self.device)?;
        let images = classifier.image_preprocessor();
        let valid: Vec<&Sample> = check.iter().map(|&i| &data.samples[i]).collect();
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
            "saved model, end to end on {} {} pairs: accuracy {:.4}, macro-F1 {:.4}",
            valid.len(),
            if data.held_out.iter().any(|h| *h) {
                "validation"
            } else {
                "training"
            },
            metrics.accuracy,
            metrics.macro_f1
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

    /// The pairs a written folder is checked on: the validation split; or, with nothing held
    /// out (cross-validated), a stratified subset of the training pairs as large as a
    /// validation split would be.
    fn check_pairs(&self, options: &TrainingOptions) -> Vec<usize> {
        let held_out: Vec<usize> = (0..self.samples.len())
            .filter(|&i| self.held_out[i])
            .collect();
        if !held_out.is_empty() {
            return held_out;
        }
        let labels: Vec<usize> = self.samples.iter().map(|s| s.label).collect();
        stratified_split(&labels, options.val_fraction, options.seed).1
    }
}

/// The cross-validated estimate in one line.
fn cv_line(cv: &CrossValidation) -> String {
    format!(
        "{}-fold cross-validation, {} epochs: {}",
        cv.folds, cv.epochs, cv.fused
    )
}
