//! The training loss: class-weighted cross-entropy on the fused output and on each branch's
//! own head, against the batch's classes or, where a regime learns from a teacher, against
//! target probabilities.

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::prelude::*;
use mvsa_model::model::ModelOutput;

use super::config::TrainingOptions;
use super::regime::Labelled;
use crate::progress::Progress;

/// Cross-entropy weighted by class, (majority count / class count) ^ power, on the fused output
/// plus `branch_loss_weight` times each branch head's own (when the model has both branches).
pub struct WeightedLoss {
    loss: CrossEntropyLoss,
    weights: Vec<f32>,
    branch_weight: f64,
}

impl WeightedLoss {
    pub fn new<X>(
        train: &[&Labelled<X>],
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
                .with_weights(Some(weights.clone()))
                .init(device),
            weights,
            branch_weight: options.branch_loss_weight,
        }
    }

    /// The loss of one set of heads; an ensemble's is its members' mean (each member learns as
    /// if alone).
    pub fn forward(&self, output: ModelOutput, targets: &Targets) -> Tensor<1> {
        let n = output.members.len() as f64;
        let mut members = output.members.into_iter();
        if let Some(first) = members.next() {
            let first = self.forward(first, targets);
            let sum = members.fold(first, |sum, m| sum + self.forward(m, targets));
            return sum / n;
        }
        let mut total = self.one(output.fused, targets);
        if let (Some(image), Some(text)) = (output.image, output.text) {
            for logits in [image, text] {
                total = total + self.one(logits, targets) * self.branch_weight;
            }
        }
        total
    }

    fn one(&self, logits: Tensor<2>, targets: &Targets) -> Tensor<1> {
        match targets {
            Targets::Classes(classes) => self.loss.forward(logits, classes.clone()),
            Targets::Soft(probabilities) => self.soft(logits, probabilities.clone()),
        }
    }

    /// Cross-entropy against target probabilities, each class's term weighted as the labels'
    /// loss weights it, normalised by the weight the targets carry (so that one-hot targets
    /// give exactly the weighted cross-entropy of their classes).
    fn soft(&self, logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
        let n = self.weights.len();
        let weights = TensorData::new(self.weights.clone(), [n]);
        let weights = Tensor::<1>::from_data(weights, &logits.device());
        let weighted = targets * weights.unsqueeze_dim(0);
        let log_p = burn::tensor::activation::log_softmax(logits, 1);
        let sum = (weighted.clone() * log_p).sum();
        sum.neg() / weighted.sum()
    }
}

/// What a batch's outputs are scored against: the classes, or target probabilities.
pub enum Targets {
    Classes(Tensor<1, Int>),
    Soft(Tensor<2>),
}

impl Targets {
    pub fn of(labels: Tensor<1, Int>, soft: Option<Tensor<2>>) -> Self {
        match soft {
            Some(soft) => Self::Soft(soft),
            None => Self::Classes(labels),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    use crate::progress::Quiet;

    #[test]
    fn one_hot_targets_score_as_the_weighted_loss_of_their_classes() {
        let device = Device::flex();
        let train: Vec<Labelled<()>> = [0, 0, 1, 2, 2, 2, 2, 2]
            .into_iter()
            .map(|label| Labelled { input: (), label })
            .collect();
        let train: Vec<&Labelled<()>> = train.iter().collect();
        let loss = WeightedLoss::new(&train, 3, &TrainingOptions::scratch(), &device, &Quiet);
        let logits = Tensor::<2>::random([4, 3], Distribution::Default, &device);
        let classes = [2usize, 0, 1, 2];
        let labels: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [4]), &device);
        let one_hot: Vec<f32> = (classes.iter())
            .flat_map(|&c| (0..3).map(move |k| f32::from(u8::from(k == c))))
            .collect();
        let one_hot = Tensor::<2>::from_data(TensorData::new(one_hot, [4, 3]), &device);
        let hard = loss
            .one(logits.clone(), &Targets::Classes(labels))
            .into_data();
        // Normalised by the weight the targets carry, as the classes' loss is.
        let soft = loss.one(logits, &Targets::Soft(one_hot));
        soft.into_data()
            .assert_approx_eq::<f32>(&hard, Tolerance::default());
    }
}
