//! Cross-validation (`train --cv K`): stratified folds over every labelled pair, each fold
//! trained for the whole schedule with its curve recorded, the epoch count where the folds'
//! mean score peaks, and mean ± standard deviation of each fold's scores at that epoch. The
//! regime's inputs (cached features, MiniLM's lower states) are computed once, before: a fold
//! only picks which pairs it trains on.

use std::time::Instant;

use anyhow::{Result, ensure};
use burn::prelude::Device;
use mvsa_model::metrics::Metrics;
use mvsa_model::model::SentimentModel;
use serde::{Deserialize, Serialize};

use super::EpochLog;
use super::config::{Selection, TrainingOptions};
use super::evaluate::Evaluation;
use super::fit::{self, Stop};
use super::regime::{Labelled, Regime};
use super::split::stratified_folds;
use crate::progress::Progress;

/// A score's mean and (sample) standard deviation over the folds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanSd {
    pub mean: f64,
    pub sd: f64,
}

/// Accuracy, macro-F1 and weighted-F1 over the folds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub accuracy: MeanSd,
    pub macro_f1: MeanSd,
    pub weighted_f1: MeanSd,
}

impl std::fmt::Display for Spread {
    /// "accuracy 0.7253 ± 0.0134, macro-F1 …, weighted-F1 …", as the CLIs print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scores = [
            ("accuracy", self.accuracy),
            ("macro-F1", self.macro_f1),
            ("weighted-F1", self.weighted_f1),
        ];
        for (i, (name, s)) in scores.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} {:.4} ± {:.4}", s.mean, s.sd)?;
        }
        Ok(())
    }
}

/// What cross-validation measured, as `metrics.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrossValidation {
    pub folds: usize,
    /// Pairs in all (each held out by one fold).
    pub pairs: usize,
    /// The epoch count chosen: where the folds' mean validation score is best.
    pub epochs: usize,
    /// The fused model's, and each branch head's, scores at that epoch.
    pub fused: Spread,
    pub image: Option<Spread>,
    pub text: Option<Spread>,
    /// Each fold's fused scores at that epoch.
    pub per_fold: Vec<Metrics>,
    pub seconds: f64,
}

/// Cross-validation's result: its record, every pair's out-of-fold prediction pooled (at the
/// chosen epoch), the folds' mean learning curve, and each fold's model at that epoch.
pub struct Outcome<R: Regime> {
    pub record: CrossValidation,
    pub pooled: Evaluation,
    pub curve: Vec<EpochLog>,
    pub folds: Vec<Fold<R>>,
}

/// One fold's pairs held out (indices into the examples) and its model at the chosen epoch.
pub struct Fold<R: Regime> {
    pub held_out: Vec<usize>,
    pub model: SentimentModel<R::Image, R::Text>,
}

/// Cross-validate `regime` over `examples` in `k` stratified folds (seeded by the options).
pub fn cross_validate<R: Regime>(
    regime: &R,
    examples: &[Labelled<R::Example>],
    k: usize,
    labels: &[String],
    options: &TrainingOptions,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Outcome<R>> {
    ensure!(k >= 2, "--cv needs at least 2 folds, got {k}");
    ensure!(
        examples.len() >= 2 * k,
        "{} pairs are too few for {k} folds",
        examples.len()
    );
    let started = Instant::now();
    let classes: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let folds = stratified_folds(&classes, k, options.seed);
    let (mut runs, mut snapshots) = (Vec::with_capacity(k), Vec::with_capacity(k));
    for (n, held_out) in folds.iter().enumerate() {
        progress.note(&format!(
            "fold {} of {k}: {} pairs held out",
            n + 1,
            held_out.len()
        ));
        let mut out = vec![false; examples.len()];
        held_out.iter().for_each(|&i| out[i] = true);
        let (valid, train): (Vec<_>, Vec<_>) = examples.iter().zip(&out).partition(|(_, o)| **o);
        let train: Vec<&Labelled<R::Example>> = train.into_iter().map(|(e, _)| e).collect();
        let valid: Vec<&Labelled<R::Example>> = valid.into_iter().map(|(e, _)| e).collect();
        let stop = Stop::EachEpoch(options.epochs);
        let fitted = fit::fit(
            regime, &train, &valid, labels, options, stop, device, progress,
        )?;
        runs.push((fitted.history, fitted.evaluations));
        snapshots.push(fitted.snapshots);
    }
    let curve = mean_curve(&runs);
    let score = |log: &EpochLog| match options.select {
        Selection::Accuracy => log.val_accuracy,
        Selection::MacroF1 => log.val_macro_f1,
    };
    let best = curve
        .iter()
        .max_by(|a, b| score(a).total_cmp(&score(b)))
        .map_or(1, |log| log.epoch);
    let at_best: Vec<&Evaluation> = runs.iter().map(|(_, e)| &e[best - 1]).collect();
    let pooled = Evaluation {
        loss: at_best.iter().map(|e| e.loss).sum::<f64>() / k as f64,
        fused: Metrics::pooled(labels, at_best.iter().map(|e| &e.fused)),
        image: pool(labels, &at_best, |e| e.image.as_ref()),
        text: pool(labels, &at_best, |e| e.text.as_ref()),
    };
    let record = CrossValidation {
        folds: k,
        pairs: examples.len(),
        epochs: best,
        fused: spread(at_best.iter().map(|e| &e.fused)),
        image: branch_spread(&at_best, |e| e.image.as_ref()),
        text: branch_spread(&at_best, |e| e.text.as_ref()),
        per_fold: at_best.iter().map(|e| e.fused.clone()).collect(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let folds = (folds.into_iter().zip(snapshots))
        .map(|(held_out, mut models)| Fold {
            held_out,
            model: models.swap_remove(best - 1),
        })
        .collect();
    Ok(Outcome {
        record,
        pooled,
        curve,
        folds,
    })
}

/// The folds' learning curves averaged epoch by epoch.
fn mean_curve(runs: &[(Vec<EpochLog>, Vec<Evaluation>)]) -> Vec<EpochLog> {
    let epochs = runs.iter().map(|(h, _)| h.len()).min().unwrap_or(0);
    let n = runs.len().max(1) as f64;
    (0..epochs)
        .map(|i| {
            let mean =
                |f: fn(&EpochLog) -> f64| runs.iter().map(|(h, _)| f(&h[i])).sum::<f64>() / n;
            EpochLog {
                epoch: i + 1,
                train_loss: mean(|l| l.train_loss),
                val_loss: mean(|l| l.val_loss),
                val_accuracy: mean(|l| l.val_accuracy),
                val_macro_f1: mean(|l| l.val_macro_f1),
                seconds: mean(|l| l.seconds),
            }
        })
        .collect()
}

fn pool(
    labels: &[String],
    evaluations: &[&Evaluation],
    part: fn(&Evaluation) -> Option<&Metrics>,
) -> Option<Metrics> {
    let parts: Option<Vec<&Metrics>> = evaluations.iter().map(|e| part(e)).collect();
    parts.map(|p| Metrics::pooled(labels, p))
}

fn branch_spread(
    evaluations: &[&Evaluation],
    part: fn(&Evaluation) -> Option<&Metrics>,
) -> Option<Spread> {
    let parts: Option<Vec<&Metrics>> = evaluations.iter().map(|e| part(e)).collect();
    parts.map(spread)
}

fn spread<'a>(metrics: impl IntoIterator<Item = &'a Metrics> + Clone) -> Spread {
    let of = |f: fn(&Metrics) -> f64| mean_sd(metrics.clone().into_iter().map(f));
    Spread {
        accuracy: of(|m| m.accuracy),
        macro_f1: of(|m| m.macro_f1),
        weighted_f1: of(|m| m.weighted_f1),
    }
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_sd(values: impl Iterator<Item = f64>) -> MeanSd {
    let values: Vec<f64> = values.collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n.max(1.0);
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    MeanSd {
        mean,
        sd: var.sqrt(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_standard_deviation() {
        let m = mean_sd([0.70, 0.72, 0.74].into_iter());
        assert!((m.mean - 0.72).abs() < 1e-12);
        assert!((m.sd - 0.02).abs() < 1e-12);
        assert_eq!(mean_sd([0.5].into_iter()).sd, 0.0);
    }
}
