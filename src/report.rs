//! `metrics.json`: what a training run measured and how it ran. One definition, written by the
//! trainer (with the pictures [`crate::plots`] draws of it), read by the tests and, its headline
//! numbers through the page's `models.json`, by the page. Files written before the model folder's format 2 read as well: their
//! `options` hold the same run settings beside model fields that now live in `config.json`.

use std::path::Path;

use anyhow::{Context, Result};
use mvsa_model::folder::{self, ValidationSummary};
use mvsa_model::metrics::Metrics;
use mvsa_model::model::WeightPlan;
use serde::{Deserialize, Serialize};

use crate::data::Skipped;
use crate::pipeline::precision::PlanScore;
use crate::plots;
use crate::training::cv::CrossValidation;
use crate::training::{EpochLog, FeatureTiming, TrainingOptions};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricsFile {
    /// Fused model on the validation split, at the kept epoch.
    pub validation: Metrics,
    /// The image branch's and the text branch's own heads on the same split.
    pub image_branch: Option<Metrics>,
    pub text_branch: Option<Metrics>,
    /// The written model folder, loaded back (f16 or int8 weights) and run end to end on the
    /// validation pictures and captions (cross-validated, with nothing held out: a stratified
    /// sample of the training pairs): what the page and `predict` get.
    #[serde(default)]
    pub saved_model: Option<Metrics>,
    /// The trained model on the same pairs before it was written (f32, on the regime's cached
    /// encoder outputs): next to `saved_model`, what storing the weights smaller cost.
    #[serde(default)]
    pub trained_model: Option<Metrics>,
    /// With `--cv`: the cross-validated estimate, the model's expected accuracy on new pairs.
    /// `validation` is then every pair's out-of-fold prediction pooled, and `history` the
    /// folds' mean curve.
    #[serde(default)]
    pub cross_validation: Option<CrossValidation>,
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
    /// The run's settings (the model's are the folder's `config.json`).
    pub options: TrainingOptions,
    /// The data folder trained on.
    pub data: String,
    /// How the folder stores the weights: `options.weights`, with the parts of
    /// `options.weights_try` the study kept.
    #[serde(default)]
    pub weights: Option<WeightPlan>,
    /// Cross-validated: each plan measured on the folds written and classified end to end,
    /// f32 first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub precision: Vec<PlanScore>,
}

impl MetricsFile {
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(folder::METRICS);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a metrics file", path.display()))
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(folder::METRICS);
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The headline numbers the page shows for the model: the cross-validated means (with
    /// their spread) where there are some; else those of the folder as written (f16 or int8
    /// weights) on the validation split where the trainer measured them, else the validation
    /// numbers.
    pub fn summary(&self) -> ValidationSummary {
        if let Some(cv) = &self.cross_validation {
            let f = &cv.fused;
            return ValidationSummary {
                accuracy: f.accuracy.mean,
                macro_f1: f.macro_f1.mean,
                weighted_f1: f.weighted_f1.mean,
                pairs: cv.pairs,
                folds: Some(cv.folds),
                sd: Some([f.accuracy.sd, f.macro_f1.sd, f.weighted_f1.sd]),
            };
        }
        let m = self.saved_model.as_ref().unwrap_or(&self.validation);
        ValidationSummary {
            accuracy: m.accuracy,
            macro_f1: m.macro_f1,
            weighted_f1: m.weighted_f1,
            pairs: self.validation_pairs,
            folds: None,
            sd: None,
        }
    }
}

/// Write `metrics.json` and its pictures into the model folder `dir`.
pub fn write(dir: &Path, metrics: &MetricsFile) -> Result<()> {
    metrics.write(dir)?;
    draw(dir, metrics)
}

/// Draw the folder's pictures from its metrics: the learning curves and the confusion matrix,
/// each titled by what it shows (one validation split, or cross-validation's folds).
pub fn draw(dir: &Path, metrics: &MetricsFile) -> Result<()> {
    let (curves, confusion) = match &metrics.cross_validation {
        Some(cv) => (
            format!(
                "{}-fold cross-validation, mean (chose {} epochs)",
                cv.folds, cv.epochs
            ),
            format!("Out of fold, {}-fold cross-validation", cv.folds),
        ),
        None => (
            format!("Validation (kept epoch {})", metrics.best_epoch),
            "Validation".to_string(),
        ),
    };
    let curves_path = dir.join(folder::CURVES);
    plots::training_curves(&metrics.history, metrics.best_epoch, &curves, &curves_path)?;
    plots::confusion_matrix(
        &metrics.validation,
        &confusion,
        &dir.join(folder::CONFUSION),
    )
}
