//! Written weights, classified end to end: the check of the folder just written, and what
//! storing the weights smaller costs. Cross-validated, each fold's model (at the epoch the folds
//! chose) is stored as a plan says, loaded by the classifier the page and `predict` use, and
//! its held-out pairs classified from pictures and captions; a plan's score is every pair's
//! out-of-fold prediction pooled, against the same folds stored in f32.

use std::path::Path;

use anyhow::Result;
use mvsa_model::metrics::Metrics;
use mvsa_model::model::Scores;
use mvsa_model::model::{WeightFormat, WeightPlan};
use mvsa_model::preprocess::TextPreprocessor;
use mvsa_model::{Classifier, ModelConfig, Prepared};
use serde::{Deserialize, Serialize};

use super::{Dataset, Trained, Trainer, folder_files};
use crate::data::Sample;
use crate::training::evaluate::Evaluation;

/// The most a part stored smaller may cost, pooled over the folds against f32: 0.3 points of
/// accuracy and 0.5 of macro-F1.
pub const MAX_ACCURACY_LOSS: f64 = 0.003;
pub const MAX_MACRO_F1_LOSS: f64 = 0.005;

/// One plan of the study, as `metrics.json`'s `precision` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanScore {
    pub weights: WeightPlan,
    /// The weights file's size.
    pub bytes: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Within the tolerance of f32 (f32 itself: the reference).
    pub within: bool,
}

impl Trainer<'_> {
    /// The plan the folder is written with, and the plans measured on the way. Without
    /// folds: `--weights` as given. With them: f32, `--weights`, then `--weights-try`'s parts
    /// in turn, each kept only if the plan with it stays within the tolerance of f32.
    pub(super) fn precision_study(
        &self,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        data: &Dataset,
        trained: &Trained,
    ) -> Result<(WeightPlan, Vec<PlanScore>)> {
        let options = &self.config.options;
        let mut chosen = options.weights.clone();
        if trained.folds.is_empty() {
            if !options.weights_try.is_empty() {
                self.progress.note(&format!(
                    "weights written as {chosen} (--weights-try's parts are measured under --cv)"
                ));
            }
            return Ok((chosen, Vec::new()));
        }
        let score = |plan: &WeightPlan, reference: Option<&PlanScore>| {
            self.score_plan(config, text, data, trained, plan, reference)
        };
        let reference = score(&WeightPlan::uniform(WeightFormat::F32), None)?;
        let mut rows = vec![reference.clone()];
        if chosen != reference.weights {
            let row = score(&chosen, Some(&reference))?;
            if !row.within {
                self.progress.note(&format!(
                    "warning: --weights {chosen} costs more than the tolerance; written so as asked"
                ));
            }
            rows.push(row);
        }
        for choice in &options.weights_try {
            let plan = chosen.clone().with(*choice);
            if plan == chosen {
                continue;
            }
            let row = score(&plan, Some(&reference))?;
            if row.within {
                chosen = plan;
            }
            rows.push(row);
        }
        self.progress.note(&format!("weights written as {chosen}"));
        Ok((chosen, rows))
    }

    /// Every fold's model stored as `plan`, loaded, and its held-out pairs classified.
    fn score_plan(
        &self,
        config: &ModelConfig,
        text: Option<&TextPreprocessor>,
        data: &Dataset,
        trained: &Trained,
        plan: &WeightPlan,
        reference: Option<&PlanScore>,
    ) -> Result<PlanScore> {
        let total = trained.folds.iter().map(|(held_out, _)| held_out.len());
        self.progress.begin(&format!("weights {plan}"), total.sum());
        let (mut scores, mut actual, mut bytes) = (Vec::new(), Vec::new(), 0);
        for (held_out, model) in &trained.folds {
            let files = folder_files(config, text, model.clone(), plan)?;
            bytes = files.weights.len();
            let classifier = Classifier::new(files, &self.device)?;
            let samples: Vec<&Sample> = held_out.iter().map(|&i| &data.samples[i]).collect();
            scores.extend(self.classify(&classifier, &samples)?);
            actual.extend(samples.iter().map(|s| s.label));
        }
        self.progress.finish();
        let metrics = Evaluation::new(&config.labels, &scores, &actual).fused;
        let within = reference.is_none_or(|r| {
            // A hair of slack: equal scores computed in another order are not a loss.
            r.accuracy - metrics.accuracy <= MAX_ACCURACY_LOSS + 1e-9
                && r.macro_f1 - metrics.macro_f1 <= MAX_MACRO_F1_LOSS + 1e-9
        });
        let cost = |of: f64, to: Option<f64>| match to {
            Some(to) => format!("{of:.4} ({:+.2})", 100.0 * (of - to)),
            None => format!("{of:.4}"),
        };
        self.progress.note(&format!(
            "weights {plan}: {:.2} MB, folds end to end: accuracy {}, macro-F1 {}{}",
            bytes as f64 / 1e6,
            cost(metrics.accuracy, reference.map(|r| r.accuracy)),
            cost(metrics.macro_f1, reference.map(|r| r.macro_f1)),
            match (reference, within) {
                (None, _) => "",
                (Some(_), true) => ": within the tolerance",
                (Some(_), false) => ": over the tolerance",
            }
        ));
        Ok(PlanScore {
            weights: plan.clone(),
            bytes,
            accuracy: metrics.accuracy,
            macro_f1: metrics.macro_f1,
            within,
        })
    }

    /// Load the folder just written and classify the `check` pairs end to end, with the
    /// classifier the page and `predict` use.
    pub(super) fn evaluate_folder(
        &self,
        dir: &Path,
        data: &Dataset,
        check: &[usize],
    ) -> Result<Metrics> {
        let classifier = Classifier::load(dir, &self.device)?;
        let valid: Vec<&Sample> = check.iter().map(|&i| &data.samples[i]).collect();
        self.progress.begin("saved model", valid.len());
        let scores = self.classify(&classifier, &valid)?;
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

    /// `samples`' pictures and captions through `classifier`, in batches, advancing the bar.
    fn classify(&self, classifier: &Classifier, samples: &[&Sample]) -> Result<Vec<Scores>> {
        let images = classifier.image_preprocessor();
        let mut scores = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(32) {
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
                    Ok(Prepared {
                        image,
                        tokens,
                        ..Prepared::default()
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            scores.extend(classifier.run(&prepared)?.into_iter().map(|p| p.scores));
            self.progress.advance(chunk.len(), None);
        }
        Ok(scores)
    }
}
