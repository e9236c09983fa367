//! Distillation (`train --distil W`): a student (the small model, or the default model while
//! MiniLM's top layers are fine-tuned) learns from a teacher's probabilities beside the labels.
//! The teacher is heads on frozen encoders' cached features (MobileNetV2's, beside MiniLM's or
//! all-mpnet-base-v2's: `--teacher`), fitted on the pairs the student trains on and on those
//! alone: each cross-validation fold gets its own teacher, so no fold's held-out pairs reach
//! its student through the teacher. The teacher also scores the unlabelled pairs
//! (`test_without_label.txt`), which the student then trains on with the teacher's
//! probabilities as their whole target ([`Taught`] keeps both for a regime).

use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result, ensure};
use burn::prelude::*;
use mvsa_model::ModelConfig;
use mvsa_model::model::{Precomputed, SentimentModel, feature_batch};

use super::config::TrainingOptions;
use super::fit::{self, Stop};
use super::heads::{Features, Heads};
use super::regime::Labelled;
use super::split::stratified_split;
use crate::progress::{Progress, Quiet};

pub struct Teacher {
    heads: Heads,
    options: TrainingOptions,
    labels: Vec<String>,
    /// Share of a labelled pair's target that is the teacher's probabilities (the rest is its
    /// label).
    weight: f64,
    /// The frozen encoders' features of every pair, by id: the labelled pairs, then the
    /// unlabelled ones.
    features: Vec<Features>,
    labelled: usize,
    /// The current teacher's probabilities of every pair, by id (empty until fitted).
    probabilities: Mutex<Vec<Vec<f32>>>,
}

impl Teacher {
    /// A teacher over `labelled` and `unlabelled` pairs' features (ids in that order), with
    /// heads shaped by `config` (both branches) and trained with `options`.
    pub fn new(
        config: &ModelConfig,
        labelled: Vec<Features>,
        unlabelled: Vec<Features>,
        weight: f64,
        options: TrainingOptions,
    ) -> Result<Self> {
        ensure!(
            (0.0..=1.0).contains(&weight),
            "the teacher's share of the target must be between 0 and 1, got {weight}"
        );
        ensure!(
            config.image.is_some() && config.text.is_some(),
            "the teacher needs both branches"
        );
        let count = labelled.len();
        let mut features = labelled;
        features.extend(unlabelled);
        Ok(Self {
            heads: Heads::teacher(config),
            options,
            labels: config.labels.clone(),
            weight,
            features,
            labelled: count,
            probabilities: Mutex::new(Vec::new()),
        })
    }

    /// Pairs in all, labelled and unlabelled (ids run `0..len`).
    pub fn len(&self) -> usize {
        self.features.len()
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// Whether a teacher has been fitted (and the pairs' probabilities are there).
    pub fn is_fitted(&self) -> bool {
        !self.probabilities().is_empty()
    }

    /// Fit a new teacher on `train`, (pair id, class) for each pair, its epoch chosen on a
    /// stratified share of them (all its epochs where they are too few to hold any out);
    /// then score every pair.
    pub fn fit_on(
        &self,
        train: &[(usize, usize)],
        device: &Device,
        progress: &dyn Progress,
    ) -> Result<()> {
        let features = |id: usize| self.features.get(id).context("no such pair");
        let examples = (train.iter())
            .map(|&(id, label)| {
                let input = features(id)?.clone();
                Ok(Labelled { input, label })
            })
            .collect::<Result<Vec<_>>>()?;
        let classes: Vec<usize> = examples.iter().map(|e| e.label).collect();
        let o = &self.options;
        let (fit_ids, valid_ids) = stratified_split(&classes, o.val_fraction, o.seed);
        let pick = |ids: &[usize]| ids.iter().map(|&i| &examples[i]).collect::<Vec<_>>();
        let (on, valid) = (pick(&fit_ids), pick(&valid_ids));
        let stop = match valid.is_empty() {
            true => Stop::After(o.epochs),
            false => Stop::BestValidation,
        };
        let fitted = fit::fit(
            &self.heads,
            &on,
            &valid,
            &self.labels,
            o,
            stop,
            device,
            &Quiet,
        )?;
        let accuracy = fitted.evaluation().map_or(f64::NAN, |e| e.fused.accuracy);
        progress.note(&format!(
            "teacher on {} pairs: epoch {}, accuracy {accuracy:.4} on {} held out",
            train.len(),
            fitted.best_epoch,
            valid.len()
        ));
        let probabilities = self.score(&fitted.model, device)?;
        *self.probabilities() = probabilities;
        Ok(())
    }

    /// The fused probabilities of every pair under `model`.
    fn score(
        &self,
        model: &SentimentModel<Precomputed, Precomputed>,
        device: &Device,
    ) -> Result<Vec<Vec<f32>>> {
        let mut probabilities = Vec::with_capacity(self.features.len());
        for chunk in self.features.chunks(256) {
            let rows = |part: fn(&Features) -> Option<&Vec<f32>>| -> Result<Tensor<2>> {
                let rows: Option<Vec<&Vec<f32>>> = chunk.iter().map(part).collect();
                let flat = (rows
                    .context("a pair lacks a branch's features")?
                    .into_iter())
                .flatten()
                .copied()
                .collect();
                Ok(feature_batch(flat, chunk.len(), device))
            };
            let (image, text) = (rows(|f| f.image.as_ref())?, rows(|f| f.text.as_ref())?);
            let scores = model
                .forward(Some(image), Some(text))?
                .probabilities()
                .read()?;
            probabilities.extend(scores.into_iter().map(|s| s.fused));
        }
        Ok(probabilities)
    }

    /// Each pair's target, `[pairs, classes]`: for a labelled pair (`Some(class)`) its one-hot
    /// class mixed with the teacher's probabilities by the teacher's weight; for an unlabelled
    /// one the teacher's probabilities alone. `None` until a teacher is fitted.
    pub fn targets(
        &self,
        pairs: impl Iterator<Item = (usize, Option<usize>)>,
        device: &Device,
    ) -> Option<Tensor<2>> {
        let probabilities = self.probabilities();
        let classes = self.labels.len();
        let w = self.weight as f32;
        let mut rows = Vec::new();
        for (id, label) in pairs {
            let teacher = probabilities.get(id)?;
            rows.extend((0..classes).map(|c| match label {
                Some(label) => w * teacher[c] + (1.0 - w) * f32::from(u8::from(c == label)),
                None => teacher[c],
            }));
        }
        let n = rows.len() / classes;
        Some(Tensor::from_data(
            TensorData::new(rows, [n, classes]),
            device,
        ))
    }

    /// The pairs' probabilities (a panic elsewhere while they were written leaves whole rows:
    /// they are replaced at once).
    fn probabilities(&self) -> std::sync::MutexGuard<'_, Vec<Vec<f32>>> {
        self.probabilities
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether pair `id` is a labelled one.
    pub fn is_labelled(&self, id: usize) -> bool {
        id < self.labelled
    }
}

/// A pair as a taught regime keeps it: it knows its id among the teacher's pairs.
pub trait Identified {
    fn id(&self) -> usize;
}

/// What a regime that learns from a teacher keeps: the teacher and the unlabelled pairs (in
/// the regime's own form) that it scores. Shared by the small model's regime and the default
/// model's fine-tuning.
pub struct Taught<X> {
    teacher: Teacher,
    unlabelled: Vec<Labelled<X>>,
}

impl<X: Identified> Taught<X> {
    /// `teacher` over `labelled` pairs then `unlabelled` ones (ids in that order).
    pub fn new(teacher: Teacher, labelled: usize, unlabelled: Vec<X>) -> Result<Self> {
        ensure!(
            teacher.len() == labelled + unlabelled.len(),
            "the teacher has {} pairs, the student {labelled} and {} unlabelled",
            teacher.len(),
            unlabelled.len()
        );
        let unlabelled = (unlabelled.into_iter())
            .map(|input| Labelled { input, label: 0 })
            .collect();
        Ok(Self {
            teacher,
            unlabelled,
        })
    }

    /// A new teacher for these pairs (each cross-validation fold, then the final fit).
    pub fn prepare(
        &self,
        train: &[&Labelled<X>],
        device: &Device,
        progress: &dyn Progress,
    ) -> Result<()> {
        let pairs: Vec<(usize, usize)> = train.iter().map(|e| (e.input.id(), e.label)).collect();
        self.teacher.fit_on(&pairs, device, progress)
    }

    /// A training batch's targets.
    pub fn targets(&self, examples: &[&Labelled<X>], device: &Device) -> Option<Tensor<2>> {
        let pairs = examples.iter().map(|e| {
            let id = e.input.id();
            (id, self.teacher.is_labelled(id).then_some(e.label))
        });
        self.teacher.targets(pairs, device)
    }

    /// The unlabelled pairs, once a teacher has scored them (never with labels to stand in).
    pub fn unlabelled(&self) -> &[Labelled<X>] {
        match self.teacher.is_fitted() {
            true => &self.unlabelled,
            false => &[],
        }
    }
}

#[cfg(test)]
impl<X: Identified> Taught<X> {
    /// A training batch's target `rows` for the labelled pair `(id, label)` then the
    /// unlabelled pair `id` are what the fitted teacher gives for those ids: the first half its
    /// class, the second the teacher's alone.
    pub fn assert_targets(
        &self,
        rows: &[f32],
        (id, label): (usize, usize),
        unlabelled: usize,
        device: &Device,
    ) {
        let pairs = [(id, Some(label)), (unlabelled, None)].into_iter();
        let want = self.teacher.targets(pairs, device).unwrap().into_data();
        let want: Vec<f32> = want.try_to_vec().unwrap();
        assert_eq!(rows.len(), want.len());
        for (got, want) in rows.iter().zip(&want) {
            assert!((got - want).abs() < 1e-5, "{rows:?} against {want:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvsa_model::config::{ImageBranchConfig, TextBranchConfig};

    fn config() -> ModelConfig {
        let shape = crate::training::tiny_minilm(1);
        ModelConfig::new(
            Some(ImageBranchConfig::mobilenet_v2()),
            Some(TextBranchConfig::minilm(shape)),
        )
    }

    /// A pair of one of two kinds, told apart by every feature's sign.
    fn features(kind: f32) -> Features {
        Features {
            image: Some(vec![kind; 1280]),
            text: Some(vec![kind; 8]),
        }
    }

    fn predicted(teacher: &Teacher, id: usize) -> usize {
        let device = Device::flex();
        let targets = teacher.targets([(id, None)].into_iter(), &device).unwrap();
        let row: Vec<f32> = targets.into_data().try_to_vec::<f32>().unwrap();
        mvsa_model::metrics::argmax(&row)
    }

    #[test]
    fn each_fit_learns_its_own_pairs_and_targets_mix_label_and_teacher() {
        let device = Device::flex();
        // Pairs 0..20: kind +1 then kind -1; pairs 20 and 21 unlabelled, one of each kind.
        let kinds: Vec<f32> = (0..20).map(|i| if i < 10 { 1.0 } else { -1.0 }).collect();
        let labelled = kinds.iter().map(|&k| features(k)).collect();
        let unlabelled = vec![features(1.0), features(-1.0)];
        let options = TrainingOptions {
            epochs: 30,
            ..TrainingOptions::heads_only()
        };
        let teacher = Teacher::new(&config(), labelled, unlabelled, 0.25, options).unwrap();
        assert!(!teacher.is_fitted());
        assert!(
            teacher
                .targets([(0, Some(0))].into_iter(), &device)
                .is_none()
        );
        assert!(teacher.is_labelled(19) && !teacher.is_labelled(20));
        // Kind +1 is negative and kind -1 positive: so the teacher says of the unlabelled.
        let classes = |first: usize, second: usize| -> Vec<(usize, usize)> {
            (0..20)
                .map(|i| (i, if i < 10 { first } else { second }))
                .collect()
        };
        teacher.fit_on(&classes(0, 2), &device, &Quiet).unwrap();
        assert!(teacher.is_fitted());
        assert_eq!((predicted(&teacher, 20), predicted(&teacher, 21)), (0, 2));
        // A labelled pair's target: a quarter the teacher's, three quarters its own class
        // (pair 0 has the features of pair 20, so the same probabilities from the teacher).
        let pairs = [(20, None), (0, Some(1))].into_iter();
        let rows = teacher.targets(pairs, &device).unwrap().into_data();
        let rows: Vec<f32> = rows.try_to_vec().unwrap();
        let (alone, mixed) = rows.split_at(3);
        for (c, (&t, &m)) in alone.iter().zip(mixed).enumerate() {
            let own = if c == 1 { 0.75 } else { 0.0 };
            assert!((m - (0.25 * t + own)).abs() < 1e-6, "{alone:?} {mixed:?}");
        }
        // Another fold's teacher learns from its own pairs only: here the kinds' classes
        // swapped, and so are its answers.
        teacher.fit_on(&classes(2, 0), &device, &Quiet).unwrap();
        assert_eq!((predicted(&teacher, 20), predicted(&teacher, 21)), (2, 0));
    }
}
