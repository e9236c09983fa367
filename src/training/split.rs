//! Splitting labelled pairs: stratified and seeded, so each class keeps its share on both sides
//! and the same seed gives the same split.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Stratified, seeded split: each class contributes `fraction` of its pairs to the second
/// (validation) part. Both parts are in ascending index order.
pub fn stratified_split(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for class in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        let n_valid = (members.len() as f64 * fraction).round() as usize;
        let n_valid = n_valid.min(members.len().saturating_sub(1));
        valid.extend_from_slice(&members[..n_valid]);
        train.extend_from_slice(&members[n_valid..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

/// Stratified, seeded `k`-fold cross-validation: the held-out indices of each fold (ascending).
/// Each class's pairs are shuffled and dealt to the folds in turn, so every pair is held out
/// exactly once and each fold keeps every class's share to within one pair.
pub fn stratified_folds(labels: &[usize], k: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let k = k.max(1);
    let mut folds = vec![Vec::new(); k];
    let mut next = 0;
    for class in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        for i in members {
            folds[next % k].push(i);
            next += 1;
        }
    }
    folds.iter_mut().for_each(|f| f.sort_unstable());
    folds
}

/// A stratified subset of about `limit` of the `labels` (all of them when there are fewer):
/// indices in ascending order.
pub fn stratified_subset(labels: &[usize], limit: usize, seed: u64) -> Vec<usize> {
    let keep = limit as f64 / labels.len().max(1) as f64;
    if keep >= 1.0 {
        return (0..labels.len()).collect();
    }
    stratified_split(labels, keep, seed ^ 0x5eed).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_seeded_and_disjoint() {
        let labels: Vec<usize> = (0..100)
            .map(|i| {
                if i < 60 {
                    2
                } else if i < 90 {
                    0
                } else {
                    1
                }
            })
            .collect();
        let (train, valid) = stratified_split(&labels, 0.2, 7);
        assert_eq!(train.len() + valid.len(), 100);
        assert!(valid.iter().all(|i| !train.contains(i)));
        let count = |idx: &[usize], c| idx.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!(
            (count(&valid, 0), count(&valid, 1), count(&valid, 2)),
            (6, 2, 12)
        );
        assert_eq!(
            stratified_split(&labels, 0.2, 7),
            (train.clone(), valid.clone())
        );
        assert_ne!(stratified_split(&labels, 0.2, 8).1, valid);
    }

    #[test]
    fn folds_are_stratified_disjoint_and_cover_every_pair() {
        let labels: Vec<usize> = (0..103).map(|i| [2, 2, 2, 0, 0, 1][i % 6]).collect();
        let folds = stratified_folds(&labels, 5, 3);
        assert_eq!(folds.len(), 5);
        let mut seen: Vec<usize> = folds.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..103).collect::<Vec<_>>(),
            "each pair held out exactly once"
        );
        for class in 0..3 {
            let total = labels.iter().filter(|&&l| l == class).count() as f64;
            for fold in &folds {
                let n = fold.iter().filter(|&&i| labels[i] == class).count() as f64;
                assert!(
                    (n - total / 5.0).abs() <= 1.0,
                    "class {class}: {n} of {total}"
                );
            }
        }
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
        assert_eq!(stratified_folds(&labels, 5, 3), folds);
        assert_ne!(stratified_folds(&labels, 5, 4), folds);
    }
}
