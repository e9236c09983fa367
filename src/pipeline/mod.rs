//! A training run, stage by stage: read the lab folder, split it, build the caption tokenizer,
//! compute what the regime trains on ([`regimes`]), fit, then write the model folder and its
//! report.

pub mod precision;
mod regimes;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::prelude::Device;
use mvsa_model::ModelConfig;
use mvsa_model::config::TextEncoderConfig;
use mvsa_model::folder::ModelFiles;
use mvsa_model::metrics::Metrics;
use mvsa_model::model::{SentimentModel, WeightPlan};
use mvsa_model::preprocess::{self, ImagePreprocessor, TextPreprocessor};

use crate::data::{self, LabFolder, Sample, Skipped};
use crate::listing;
use crate::pretrained::EncoderFiles;
use crate::progress::Progress;
use crate::report::{self, MetricsFile};
use crate::staging::Staging;
use crate::tokenizer;
use crate::training::config::TeacherText;
use crate::training::cv::{self, CrossValidation};
use crate::training::evaluate::{self, Evaluation};
use crate::training::fit::{self, Stop};
use crate::training::regime::{Labelled, Regime};
use crate::training::split::{stratified_split, stratified_subset};
use crate::training::{EpochLog, FeatureTiming, RegimeKind, TrainingConfig, TrainingOptions};

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
    /// Pairs without a label (`test_without_label.txt`), read only to distil from a teacher.
    unlabelled: Vec<Sample>,
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
    /// Cross-validated: each fold's pairs held out and its model at the chosen epoch, as it
    /// would ship.
    folds: Vec<(Vec<usize>, SentimentModel)>,
}

impl Trainer<'_> {
    /// Train on the lab folder `data_dir` and write the model folder `out_dir`.
    pub fn run(&self, data_dir: &Path, out_dir: &Path) -> Result<MetricsFile> {
        let started = Instant::now();
        let regime = self.config.regime()?;
        // A missing fetch fails here, before anything slow.
        self.encoders.check(&self.config.model)?;
        let o = &self.config.options;
        match (o.distil > 0.0, o.teacher) {
            (true, TeacherText::Minilm) => self.encoders.check_minilm()?,
            (true, TeacherText::Mpnet) => self.encoders.check_mpnet()?,
            (false, _) => {}
        }
        let data = self.read(data_dir)?;
        let (config, text) = self.tokenizer(&data)?;
        let trained = match regime {
            RegimeKind::Scratch => self.scratch(&config, text.as_ref(), &data)?,
            RegimeKind::Heads => self.heads(&config, text.as_ref(), &data)?,
            RegimeKind::Mixed => self.mixed(&config, text.as_ref(), &data)?,
            RegimeKind::FineTune {
                layers,
                image_layers,
            } => self.finetune(&config, text.as_ref(), &data, (layers, image_layers))?,
        };
        let (weights, precision) = self.precision_study(&config, text.as_ref(), &data, &trained)?;
        // Written and checked beside `out_dir`, then swapped in: a failed or interrupted run
        // leaves the previous folder whole.
        let staging = Staging::new(out_dir)?;
        self.write_folder(staging.dir(), &config, text.as_ref(), &trained, &weights)?;
        let saved = self.evaluate_folder(staging.dir(), &data, &trained.check)?;
        let mut metrics = self.metrics(data_dir, data, trained, saved, started);
        (metrics.weights, metrics.precision) = (Some(weights), precision);
        report::write(staging.dir(), &metrics)?;
        let out_dir = staging.commit()?;
        listing::register_if_listed(&out_dir)?;
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
            weights: None,
            precision: Vec::new(),
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
        let listed: HashSet<String> = rows.iter().map(|(guid, _)| guid.clone()).collect();
        if let Some(limit) = o.limit {
            let labels: Vec<usize> = rows.iter().map(|r| r.1).collect();
            let subset = stratified_subset(&labels, limit, o.seed);
            rows = subset.into_iter().map(|i| rows[i].clone()).collect();
        }
        let images = self.config.model.image.as_ref();
        let images = images.map(|b| ImagePreprocessor::new(b.preprocess.clone()));
        let (samples, skipped) = data::load_samples(&folder, &rows, images.as_ref(), self.progress);
        self.warn_skipped("", &skipped);
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
        let unlabelled = match o.distil > 0.0 {
            true => self.read_unlabelled(&folder, images.as_ref(), &listed, rows.len())?,
            false => Vec::new(),
        };
        Ok(Dataset {
            samples,
            skipped,
            held_out,
            unlabelled,
        })
    }

    /// The test list's pairs, for a teacher to label (none where the folder has no test list):
    /// those not `labelled` in the training list, and with `--limit` (`used` of them) the
    /// same share of them.
    fn read_unlabelled(
        &self,
        folder: &LabFolder,
        images: Option<&ImagePreprocessor>,
        labelled: &HashSet<String>,
        used: usize,
    ) -> Result<Vec<Sample>> {
        let list = folder.root().join(data::TEST_LIST);
        if !list.exists() {
            self.progress.note(&format!(
                "warning: no {}: distilling on the labelled pairs alone",
                list.display()
            ));
            return Ok(Vec::new());
        }
        let test = data::read_list(&list)?;
        let listed_test = test.len();
        // Their tags are not read: the teacher's probabilities stand in for them. A pair that
        // is labelled too is left out: a fold holding it out would still train its student on
        // it.
        let mut test: Vec<(String, usize)> = (test.into_iter())
            .filter(|row| !labelled.contains(&row.guid))
            .map(|row| (row.guid, 0))
            .collect();
        if test.len() < listed_test {
            self.progress.note(&format!(
                "warning: left out {} of the pairs in {}: they are labelled in {}",
                listed_test - test.len(),
                list.display(),
                data::TRAIN_LIST
            ));
        }
        test.truncate((test.len() * used).div_ceil(labelled.len().max(1)));
        let (samples, skipped) = data::load_samples(folder, &test, images, self.progress);
        self.warn_skipped("unlabelled ", &skipped);
        self.progress.note(&format!(
            "{} unlabelled pairs from {} for the teacher to label",
            samples.len(),
            list.display()
        ));
        Ok(samples)
    }

    fn warn_skipped(&self, kind: &str, skipped: &[Skipped]) {
        for s in skipped {
            (self.progress).note(&format!("warning: skipped {kind}{}: {}", s.guid, s.reason));
        }
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

    /// Fit `regime` on `inputs` (one per sample): on the training split, keeping the best
    /// validation epoch; or, cross-validated, on every pair for the epoch count the folds chose.
    fn fit<R: Regime>(
        &self,
        regime: R,
        inputs: Vec<R::Example>,
        data: &Dataset,
        features: Option<FeatureTiming>,
    ) -> Result<Trained> {
        let examples = labelled(inputs, data);
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
        let (history, best_epoch, evaluation, cross_validation, folds) = match cv {
            Some(cv) => {
                let folds = (cv.folds.into_iter())
                    .map(|fold| Ok((fold.held_out, regime.finish(fold.model)?)))
                    .collect::<Result<_>>()?;
                let epochs = cv.record.epochs;
                (cv.curve, epochs, cv.pooled, Some(cv.record), folds)
            }
            None => {
                let evaluation = fitted
                    .evaluation()
                    .cloned()
                    .context("no epoch was evaluated")?;
                (
                    fitted.history,
                    fitted.best_epoch,
                    evaluation,
                    None,
                    Vec::new(),
                )
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
            folds,
        })
    }

    /// Weights (in the format the options ask for), config and tokenizer into `out_dir`.
    fn write_folder(
        &self,
        out_dir: &Path,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        trained: &Trained,
        weights: &WeightPlan,
    ) -> Result<()> {
        let files = folder_files(config, text, trained.model.clone(), weights)?;
        files
            .write(out_dir)
            .with_context(|| format!("cannot write the model folder {}", out_dir.display()))
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

/// The files of a model folder: `model` stored as `weights` says, `config`, the tokenizer.
fn folder_files(
    config: &ModelConfig,
    text: Option<&TextPreprocessor>,
    model: SentimentModel,
    weights: &WeightPlan,
) -> Result<ModelFiles> {
    let weights = (model.stored_bytes(weights)).context("cannot serialise the weights")?;
    let tokenizer = match text {
        Some(text) => Some(
            // Compact: indented, MiniLM's is 0.71 MB instead of 0.47.
            text.tokenizer()
                .to_string(false)
                .map_err(anyhow::Error::msg)?
                .into_bytes(),
        ),
        None => None,
    };
    Ok(ModelFiles {
        config: config.clone(),
        tokenizer,
        weights,
    })
}

/// Each sample's input beside its class.
fn labelled<X>(inputs: Vec<X>, data: &Dataset) -> Vec<Labelled<X>> {
    let samples = inputs.into_iter().zip(&data.samples);
    samples
        .map(|(input, sample)| Labelled {
            input,
            label: sample.label,
        })
        .collect()
}
