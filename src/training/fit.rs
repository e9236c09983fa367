//! The one epoch loop every regime shares: shuffle, batch, forward, the loss
//! ([`super::loss`]), Adam with a cosine-decayed learning rate per parameter group, a
//! validation pass per epoch ([`super::evaluate`]), and early stopping on the chosen score.

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::{ModuleLrScheduler, ModuleLrSchedulerConfig};
use burn::module::ParamGroup;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use mvsa_model::model::SentimentModel;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::EpochLog;
use super::config::{Selection, TrainingOptions};
use super::evaluate::{Evaluation, evaluate};
use super::loss::{Targets, WeightedLoss};
use super::regime::{Labelled, Regime};
use crate::progress::Progress;

/// When a fit stops and which epoch's model it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The epoch with the best validation score, stopping `patience` epochs after it.
    BestValidation,
    /// Every epoch up to this one (of a schedule `options.epochs` long), keeping the last:
    /// cross-validation folds (all epochs, to average their curves) and the final fit on every
    /// pair (the epoch the folds chose, nothing held out).
    After(usize),
    /// As `After`, and each epoch's model kept too: cross-validation folds, whose model at the
    /// epoch the folds choose is written and classified end to end afterwards.
    EachEpoch(usize),
}

/// The kept epoch's model, how training went, and the evaluation of every epoch (none when
/// nothing was held out).
pub struct Fitted<R: Regime> {
    pub model: SentimentModel<R::Image, R::Text>,
    pub history: Vec<EpochLog>,
    pub best_epoch: usize,
    pub evaluations: Vec<Evaluation>,
    /// Each epoch's model, with [`Stop::EachEpoch`] (else empty).
    pub snapshots: Vec<SentimentModel<R::Image, R::Text>>,
}

impl<R: Regime> Fitted<R> {
    /// The kept epoch's evaluation.
    pub fn evaluation(&self) -> Option<&Evaluation> {
        self.evaluations.get(self.best_epoch.checked_sub(1)?)
    }
}

/// Train `regime` on `train`, evaluating every epoch on `valid` (which may be empty with
/// [`Stop::After`]), and keep the epoch `stop` says.
#[allow(clippy::too_many_arguments)]
pub fn fit<R: Regime>(
    regime: &R,
    train: &[&Labelled<R::Example>],
    valid: &[&Labelled<R::Example>],
    labels: &[String],
    options: &TrainingOptions,
    stop: Stop,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Fitted<R>> {
    let last = match stop {
        Stop::BestValidation => options.epochs,
        Stop::After(epoch) | Stop::EachEpoch(epoch) => epoch.min(options.epochs),
    };
    ensure!(
        !valid.is_empty() || stop != Stop::BestValidation,
        "nothing held out to choose an epoch by"
    );
    regime.prepare(train, device, progress)?;
    // The class weights count the labelled pairs; an epoch passes over the unlabelled too.
    let autodiff = device.clone().autodiff();
    let loss = WeightedLoss::new(train, labels.len(), options, &autodiff, progress);
    let train: Vec<&Labelled<R::Example>> =
        (train.iter().copied()).chain(regime.unlabelled()).collect();
    let train = train.as_slice();
    let mut learner = Learner::new(regime, train.len(), loss, options, device)?;
    let (mut history, mut evaluations, mut snapshots) = (Vec::new(), Vec::new(), Vec::new());
    let mut best: Option<Kept<R>> = None;
    for epoch in 1..=last {
        let started = Instant::now();
        let train_loss;
        (learner, train_loss) = learner.epoch(regime, train, epoch, progress)?;
        let snapshot = learner.model.valid();
        let evaluation = match valid.is_empty() {
            true => None,
            false => Some(evaluate(regime, &snapshot, valid, labels, device)?),
        };
        let log = epoch_log(epoch, train_loss, evaluation.as_ref(), started);
        let score = match options.select {
            Selection::Accuracy => log.val_accuracy,
            Selection::MacroF1 => log.val_macro_f1,
        };
        let improved = match stop {
            Stop::BestValidation => best.as_ref().is_none_or(|b| score > b.score),
            Stop::After(_) | Stop::EachEpoch(_) => epoch == last,
        };
        progress.note(&epoch_line(&log, improved));
        history.push(log);
        evaluations.extend(evaluation);
        if let Stop::EachEpoch(_) = stop {
            snapshots.push(snapshot.clone());
        }
        if improved {
            best = Some(Kept {
                score,
                epoch,
                model: snapshot,
            });
        } else if stop == Stop::BestValidation
            && epoch - best.as_ref().map_or(0, |b| b.epoch) >= options.patience
        {
            progress.note(&format!(
                "early stop: no better validation score for {} epochs",
                options.patience
            ));
            break;
        }
    }
    let Some(kept) = best else {
        bail!("no epoch was run");
    };
    progress.note(&format!("kept epoch {}", kept.epoch));
    Ok(Fitted {
        model: kept.model,
        history,
        best_epoch: kept.epoch,
        evaluations,
        snapshots,
    })
}

/// The epoch kept so far, and its score.
struct Kept<R: Regime> {
    score: f64,
    epoch: usize,
    model: SentimentModel<R::Image, R::Text>,
}

/// One epoch's line of the log (validation numbers are NaN when nothing was held out).
fn epoch_log(
    epoch: usize,
    train_loss: f64,
    evaluation: Option<&Evaluation>,
    started: Instant,
) -> EpochLog {
    EpochLog {
        epoch,
        train_loss,
        val_loss: evaluation.map_or(f64::NAN, |e| e.loss),
        val_accuracy: evaluation.map_or(f64::NAN, |e| e.fused.accuracy),
        val_macro_f1: evaluation.map_or(f64::NAN, |e| e.fused.macro_f1),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn epoch_line(log: &EpochLog, kept: bool) -> String {
    let valid = match log.val_loss.is_nan() {
        true => String::new(),
        false => format!(
            "  val loss {:.4}  acc {:.4}  macro-F1 {:.4}",
            log.val_loss, log.val_accuracy, log.val_macro_f1
        ),
    };
    format!(
        "epoch {:>3}  train loss {:.4}{valid}  {:.1}s{}",
        log.epoch,
        log.train_loss,
        log.seconds,
        if kept { "  *" } else { "" }
    )
}

/// The module being trained, on the autodiff device, with its optimiser, schedule, loss and
/// the random numbers for shuffling and augmentation.
struct Learner<R: Regime> {
    model: SentimentModel<R::Image, R::Text>,
    optim: ModuleOptimizer,
    schedule: ModuleLrScheduler,
    loss: WeightedLoss,
    rng: StdRng,
    device: Device,
    batch_size: usize,
}

impl<R: Regime> Learner<R> {
    fn new(
        regime: &R,
        pairs: usize,
        loss: WeightedLoss,
        options: &TrainingOptions,
        device: &Device,
    ) -> Result<Self> {
        let device = device.clone().autodiff();
        device.seed(options.seed);
        let model = regime.init(&device)?;
        let steps = options.epochs * pairs.div_ceil(options.batch_size);
        let (optim, schedule) = optimiser(options, regime.lr_groups(&model), steps)?;
        Ok(Self {
            model,
            optim,
            schedule,
            loss,
            rng: StdRng::seed_from_u64(options.seed),
            device,
            batch_size: options.batch_size,
        })
    }

    /// One pass over `train` in a new random order; the mean training loss. (By value: the
    /// optimiser then holds the only handle on the parameters it updates.)
    fn epoch(
        mut self,
        regime: &R,
        train: &[&Labelled<R::Example>],
        epoch: usize,
        progress: &dyn Progress,
    ) -> Result<(Self, f64)> {
        let batches = self.batches(regime, train);
        progress.begin(&format!("epoch {epoch}"), batches.len());
        let mut loss_sum = 0.0;
        for (b, chunk) in batches.iter().enumerate() {
            let examples: Vec<&Labelled<R::Example>> = chunk.iter().map(|&i| train[i]).collect();
            let batch = regime.batch(&examples, Some(&mut self.rng), &self.device);
            let output = self.model.forward(batch.image, batch.text)?;
            let total = self
                .loss
                .forward(output, &Targets::of(batch.labels, batch.targets));
            let value = total.clone().into_scalar::<f32>() as f64;
            ensure!(
                value.is_finite(),
                "training diverged (loss {value}) at epoch {epoch}"
            );
            loss_sum += value;
            let grads = GradientsParams::from_grads(total.backward(), &self.model);
            self.model = self.optim.step(self.schedule.step(), self.model, grads);
            progress.advance(1, Some(&format!("loss {:.4}", loss_sum / (b + 1) as f64)));
        }
        progress.finish();
        Ok((self, loss_sum / batches.len() as f64))
    }

    /// This epoch's batches: a new random order; where examples have lengths, sorted by length
    /// within windows of 16 batches and the batches then shuffled (every batch still a random
    /// draw, but of similar lengths).
    fn batches(&mut self, regime: &R, train: &[&Labelled<R::Example>]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut self.rng);
        let lengths: Option<Vec<usize>> = train.iter().map(|e| regime.length(&e.input)).collect();
        let Some(lengths) = lengths else {
            return order
                .chunks(self.batch_size)
                .map(<[usize]>::to_vec)
                .collect();
        };
        let mut batches = Vec::with_capacity(order.len().div_ceil(self.batch_size));
        for window in order.chunks_mut(self.batch_size * 16) {
            window.sort_by_key(|&i| lengths[i]);
            batches.extend(window.chunks(self.batch_size).map(<[usize]>::to_vec));
        }
        batches.shuffle(&mut self.rng);
        batches
    }
}

/// Adam for every parameter (a group per learning rate), each group's rate decayed along a
/// cosine to 5 % of its initial value over the run's steps.
fn optimiser(
    options: &TrainingOptions,
    groups: Vec<(ParamGroup, f64)>,
    steps: usize,
) -> Result<(ModuleOptimizer, ModuleLrScheduler)> {
    let cosine =
        |lr: f64| CosineAnnealingLrSchedulerConfig::new(lr, steps.max(1)).with_min_lr(0.05 * lr);
    let mut optim = AdamConfig::new().init();
    let mut schedule = ModuleLrSchedulerConfig::new(cosine(options.lr).into());
    for (group, lr) in groups {
        optim = optim.with_group(group.clone(), AdamConfig::new().build(), None);
        schedule = schedule.with_group(group, cosine(lr));
    }
    let schedule = schedule
        .init()
        .map_err(|e| anyhow!(e))
        .context("learning rates must be in (0, 1]")?;
    Ok((optim, schedule))
}
