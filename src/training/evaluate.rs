//! Evaluation: a model's probabilities over labelled pairs (averaged over a regime's views
//! where it has several: test-time augmentation), and the metrics of the fused output and of
//! each branch head.

use anyhow::Result;
use burn::prelude::*;
use mvsa_model::metrics::{Metrics, argmax};
use mvsa_model::model::{Scores, SentimentModel};

use super::regime::{Labelled, Regime};

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

/// Evaluate `model` on `examples` with `regime`'s batches (no augmentation; the probabilities
/// of its views averaged where it has several).
pub fn evaluate<R: Regime>(
    regime: &R,
    model: &SentimentModel<R::Image, R::Text>,
    examples: &[&Labelled<R::Example>],
    labels: &[String],
    device: &Device,
) -> Result<Evaluation> {
    evaluate_views(regime, model, examples, labels, device, regime.views())
}

/// Evaluate `model` as the classifier runs it: one view of each pair.
pub fn evaluate_as_shipped<R: Regime>(
    regime: &R,
    model: &SentimentModel<R::Image, R::Text>,
    examples: &[&Labelled<R::Example>],
    labels: &[String],
    device: &Device,
) -> Result<Evaluation> {
    evaluate_views(regime, model, examples, labels, device, 1)
}

fn evaluate_views<R: Regime>(
    regime: &R,
    model: &SentimentModel<R::Image, R::Text>,
    examples: &[&Labelled<R::Example>],
    labels: &[String],
    device: &Device,
    views: usize,
) -> Result<Evaluation> {
    let mut scores = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(64) {
        let views = (0..views.max(1)).map(|v| {
            let batch = regime.view(chunk, v, device);
            model
                .forward(batch.image, batch.text)?
                .probabilities()
                .read()
        });
        scores.extend(mean_scores(views.collect::<mvsa_model::Result<Vec<_>>>()?));
    }
    let actual: Vec<usize> = examples.iter().map(|e| e.label).collect();
    Ok(Evaluation::new(labels, &scores, &actual))
}

/// Each pair's probabilities averaged over views (one `Vec` of pairs per view).
fn mean_scores(mut views: Vec<Vec<Scores>>) -> Vec<Scores> {
    let n = views.len() as f32;
    let Some(mut mean) = views.pop() else {
        return Vec::new();
    };
    if views.is_empty() {
        return mean;
    }
    let add = |sum: &mut Vec<f32>, p: &[f32]| sum.iter_mut().zip(p).for_each(|(s, p)| *s += p);
    for view in &views {
        for (m, s) in mean.iter_mut().zip(view) {
            add(&mut m.fused, &s.fused);
            for (mine, theirs) in [(&mut m.image, &s.image), (&mut m.text, &s.text)] {
                if let (Some(mine), Some(theirs)) = (mine.as_mut(), theirs) {
                    add(mine, theirs);
                }
            }
        }
    }
    for m in &mut mean {
        let parts = [Some(&mut m.fused), m.image.as_mut(), m.text.as_mut()];
        parts.into_iter().flatten().flatten().for_each(|p| *p /= n);
    }
    mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_probabilities_are_averaged_branch_by_branch() {
        let scores = |fused: [f32; 3], image: Option<[f32; 3]>| Scores {
            fused: fused.to_vec(),
            image: image.map(|p| p.to_vec()),
            text: None,
        };
        let a = vec![scores([1.0, 0.0, 0.0], Some([0.0, 1.0, 0.0]))];
        let b = vec![scores([0.0, 0.0, 1.0], Some([0.0, 0.0, 1.0]))];
        let mean = mean_scores(vec![a.clone(), b]);
        assert_eq!(mean, vec![scores([0.5, 0.0, 0.5], Some([0.0, 0.5, 0.5]))]);
        assert_eq!(mean_scores(vec![a.clone()]), a);
        assert!(mean_scores(Vec::new()).is_empty());
    }
}
