//! The one epoch loop every regime shares: shuffle, batch, forward, weighted cross-entropy on
//! the fused output and on each branch's own head, Adam with a cosine-decayed learning rate per
//! parameter group, a validation pass per epoch, and early stopping on the chosen score.

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::{ModuleLrScheduler, ModuleLrSchedulerConfig};
use burn::module::ParamGroup;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use mvsa_model::metrics::{Metrics, argmax};
use mvsa_model::model::{Encoder, ModelOutput, Scores, SentimentModel};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::EpochLog;
use super::config::{Selection, TrainingOptions};
use crate::progress::Progress;

/// A training pair as a regime keeps it, with its class.
pub struct Labelled<X> {
    pub input: X,
    pub label: usize,
}

/// What each branch's encoder reads for a batch, and the batch's classes.
pub struct Batch<I: Encoder, T: Encoder> {
    pub image: Option<I::Input>,
    pub text: Option<T::Input>,
    pub labels: Tensor<1, Int>,
}

/// One way of training the model: what it keeps of each pair, how pairs become a batch, which
/// module learns, and how the result becomes the model that ships.
pub trait Regime {
    type Image: Encoder;
    type Text: Encoder;
    type Example: Sync;

    /// The module to train, freshly initialised on `device` (an autodiff device).
    fn init(&self, device: &Device) -> Result<SentimentModel<Self::Image, Self::Text>>;

    /// Tensors for `examples`; with `augment`, the regime's augmentation draws from it.
    fn batch(
        &self,
        examples: &[&Labelled<Self::Example>],
        augment: Option<&mut StdRng>,
        device: &Device,
    ) -> Batch<Self::Image, Self::Text>;

    /// Parameters that learn at their own initial rate (everything else: the options' `lr`).
    fn lr_groups(
        &self,
        _model: &SentimentModel<Self::Image, Self::Text>,
    ) -> Vec<(ParamGroup, f64)> {
        Vec::new()
    }

    /// The trained module as the model that ships: frozen encoders back under the heads.
    fn finish(self, model: SentimentModel<Self::Image, Self::Text>) -> Result<SentimentModel>;
}

/// The classes of a batch as a tensor.
pub fn labels<X>(examples: &[&Labelled<X>], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = examples.iter().map(|e| e.label as i64).collect();
    Tensor::from_data(TensorData::new(labels, [examples.len()]), device)
}

/// Validation numbers of one model: mean cross-entropy of the fused output, and metrics of the
/// fused output and of each branch head.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub loss: f64,
    pub fused: Metrics,
    pub image: Option<Metrics>,
    pub text: Option<Metrics>,
}

impl Evaluation {
    /// From each pair's probabilities and true class. Branch metrics only where a model has
    /// both branches (alone, a branch's head is the fused output).
    pub fn new(labels: &[String], scores: &[Scores], actual: &[usize]) -> Self {
        let metrics = |probs: Vec<&Vec<f32>>| {
            let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
            Metrics::compute(labels, actual, &predicted)
        };
        let branch = |part: fn(&Scores) -> Option<&Vec<f32>>| {
            let probs: Option<Vec<&Vec<f32>>> = scores.iter().map(part).collect();
            let both = scores.iter().all(|s| s.image.is_some() && s.text.is_some());
            probs.filter(|_| both).map(metrics)
        };
        let loss = scores
            .iter()
            .zip(actual)
            .map(|(s, &a)| -(s.fused[a].max(1e-7) as f64).ln())
            .sum::<f64>()
            / actual.len().max(1) as f64;
        Self {
            loss,
            fused: metrics(scores.iter().map(|s| &s.fused).collect()),
            image: branch(|s| s.image.as_ref()),
            text: branch(|s| s.text.as_ref()),
        }
    }
}

/// The kept epoch's model (a validation snapshot), how training went, and its evaluation.
pub struct Fitted<R: Regime> {
    pub model: SentimentModel<R::Image, R::Text>,
    pub history: Vec<EpochLog>,
    pub best_epoch: usize,
    pub evaluation: Evaluation,
}

/// Evaluate `model` on `examples` with `regime`'s batches (no augmentation).
pub fn evaluate<R: Regime>(
    regime: &R,
    model: &SentimentModel<R::Image, R::Text>,
    examples: &[Labelled<R::Example>],
    labels: &[String],
    device: &Device,
) -> Result<Evaluation> {
    let mut scores = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(64) {
        let chunk: Vec<&Labelled<R::Example>> = chunk.iter().collect();
        let batch = regime.batch(&chunk, None, device);
        scores.extend(
            model
                .forward(batch.image, batch.text)?
                .probabilities()
                .read()?,
        );
    }
    let actual: Vec<usize> = examples.iter().map(|e| e.label).collect();
    Ok(Evaluation::new(labels, &scores, &actual))
}

/// The kept epoch so far.
struct Best<R: Regime> {
    score: f64,
    epoch: usize,
    model: SentimentModel<R::Image, R::Text>,
    evaluation: Evaluation,
}

/// Train `regime` on `train`, keeping the epoch with the best score on `valid`.
pub fn fit<R: Regime>(
    regime: &R,
    train: &[Labelled<R::Example>],
    valid: &[Labelled<R::Example>],
    labels: &[String],
    options: &TrainingOptions,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Fitted<R>> {
    let mut learner = Learner::new(regime, train, labels.len(), options, device, progress)?;
    let mut train_loss;
    let mut history = Vec::new();
    let mut best: Option<Best<R>> = None;
    for epoch in 1..=options.epochs {
        let started = Instant::now();
        (learner, train_loss) = learner.epoch(regime, train, epoch, progress)?;
        let snapshot = learner.model.valid();
        let evaluation = evaluate(regime, &snapshot, valid, labels, device)?;
        let log = EpochLog {
            epoch,
            train_loss,
            val_loss: evaluation.loss,
            val_accuracy: evaluation.fused.accuracy,
            val_macro_f1: evaluation.fused.macro_f1,
            seconds: started.elapsed().as_secs_f64(),
        };
        let score = match options.select {
            Selection::Accuracy => log.val_accuracy,
            Selection::MacroF1 => log.val_macro_f1,
        };
        let improved = best.as_ref().is_none_or(|b| score > b.score);
        progress.note(&format!(
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
            best = Some(Best {
                score,
                epoch,
                model: snapshot,
                evaluation,
            });
        } else if epoch - best.as_ref().map_or(0, |b| b.epoch) >= options.patience {
            progress.note(&format!(
                "early stop: no better validation score for {} epochs",
                options.patience
            ));
            break;
        }
    }
    let Some(best) = best else {
        bail!("no epoch was run");
    };
    progress.note(&format!("kept epoch {}", best.epoch));
    Ok(Fitted {
        model: best.model,
        history,
        best_epoch: best.epoch,
        evaluation: best.evaluation,
    })
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
        train: &[Labelled<R::Example>],
        classes: usize,
        options: &TrainingOptions,
        device: &Device,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let device = device.clone().autodiff();
        device.seed(options.seed);
        let model = regime.init(&device)?;
        let steps = options.epochs * train.len().div_ceil(options.batch_size);
        let (optim, schedule) = optimiser(options, regime.lr_groups(&model), steps)?;
        let loss = WeightedLoss::new(train, classes, options, &device, progress);
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
        train: &[Labelled<R::Example>],
        epoch: usize,
        progress: &dyn Progress,
    ) -> Result<(Self, f64)> {
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut self.rng);
        let batches = order.len().div_ceil(self.batch_size);
        progress.begin(&format!("epoch {epoch}"), batches);
        let mut loss_sum = 0.0;
        for (b, chunk) in order.chunks(self.batch_size).enumerate() {
            let examples: Vec<&Labelled<R::Example>> = chunk.iter().map(|&i| &train[i]).collect();
            let batch = regime.batch(&examples, Some(&mut self.rng), &self.device);
            let output = self.model.forward(batch.image, batch.text)?;
            let total = self.loss.forward(output, batch.labels);
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
        Ok((self, loss_sum / batches as f64))
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

/// Cross-entropy weighted by class, (majority count / class count) ^ power, on the fused output
/// plus `branch_loss_weight` times each branch head's own (when the model has both branches).
struct WeightedLoss {
    loss: CrossEntropyLoss,
    branch_weight: f64,
}

impl WeightedLoss {
    fn new<X>(
        train: &[Labelled<X>],
        classes: usize,
        options: &TrainingOptions,
        device: &Device,
        progress: &dyn Progress,
    ) -> Self {
        let mut counts = vec![0usize; classes];
        train.iter().for_each(|e| counts[e.label] += 1);
        let majority = *counts.iter().max().unwrap_or(&1) as f64;
        let weights: Vec<f32> = counts
            .iter()
            .map(|&c| (majority / c.max(1) as f64).powf(options.class_weight_power) as f32)
            .collect();
        progress.note(&format!("class weights {weights:.2?}"));
        Self {
            loss: CrossEntropyLossConfig::new()
                .with_weights(Some(weights))
                .init(device),
            branch_weight: options.branch_loss_weight,
        }
    }

    fn forward(&self, output: ModelOutput, targets: Tensor<1, Int>) -> Tensor<1> {
        let mut total = self.loss.forward(output.fused, targets.clone());
        if let (Some(image), Some(text)) = (output.image, output.text) {
            for logits in [image, text] {
                let branch = self.loss.forward(logits, targets.clone());
                total = total + branch * self.branch_weight;
            }
        }
        total
    }
}
