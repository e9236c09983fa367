//! Classification metrics written to `metrics.json`: accuracy, macro- and weighted-F1,
//! per-class precision / recall / F1 and the confusion matrix.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub count: usize,
}

impl Metrics {
    /// Metrics of `predicted` against `actual` (class indices into `labels`).
    pub fn compute(labels: &[String], actual: &[usize], predicted: &[usize]) -> Self {
        assert_eq!(actual.len(), predicted.len(), "one prediction per example");
        let k = labels.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&a, &p) in actual.iter().zip(predicted) {
            confusion[a][p] += 1;
        }
        Self::from_confusion(labels, confusion)
    }

    /// The metrics of several evaluations' predictions taken together (cross-validation's
    /// folds: every pair predicted once, by the model that did not train on it).
    pub fn pooled<'a>(labels: &[String], parts: impl IntoIterator<Item = &'a Metrics>) -> Self {
        let k = labels.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for part in parts {
            for (row, part_row) in confusion.iter_mut().zip(&part.confusion) {
                row.iter_mut().zip(part_row).for_each(|(a, b)| *a += b);
            }
        }
        Self::from_confusion(labels, confusion)
    }

    /// From `confusion[true][predicted]` over `labels`.
    pub fn from_confusion(labels: &[String], confusion: Vec<Vec<usize>>) -> Self {
        let k = labels.len();
        let count = confusion.iter().flatten().sum();
        let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let per_class: Vec<ClassMetrics> = (0..k)
            .map(|c| {
                let tp = confusion[c][c];
                let support: usize = confusion[c].iter().sum();
                let predicted: usize = (0..k).map(|r| confusion[r][c]).sum();
                let precision = ratio(tp, predicted);
                let recall = ratio(tp, support);
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                ClassMetrics {
                    label: labels[c].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let macro_f1 = per_class.iter().map(|c| c.f1).sum::<f64>() / k as f64;
        let weighted_f1 = if count == 0 {
            0.0
        } else {
            per_class
                .iter()
                .map(|c| c.f1 * c.support as f64)
                .sum::<f64>()
                / count as f64
        };
        Self {
            accuracy: ratio(correct, count),
            macro_f1,
            weighted_f1,
            per_class,
            confusion,
            count,
        }
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // actual:    a a a b b c
        // predicted: a a b b c c
        let m = Metrics::compute(&labels, &[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2]);
        assert_eq!(
            m.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // a: p=1, r=2/3, f1=0.8; b: p=1/2, r=1/2, f1=0.5; c: p=1/2, r=1, f1=2/3
        let f1: Vec<f64> = m.per_class.iter().map(|c| c.f1).collect();
        assert!((f1[0] - 0.8).abs() < 1e-12 && (f1[1] - 0.5).abs() < 1e-12);
        assert!((f1[2] - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!((m.weighted_f1 - (0.8 * 3.0 + 0.5 * 2.0 + 2.0 / 3.0) / 6.0).abs() < 1e-12);
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
    }
}
