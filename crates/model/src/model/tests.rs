use super::*;
use crate::config::{ImageBranchConfig, TextBranchConfig};

fn config(image: bool, text: bool) -> ModelConfig {
    ModelConfig::new(
        image.then(|| ImageBranchConfig::scratch(32)),
        text.then(|| TextBranchConfig::scratch(20, 8)),
    )
}

fn tokens(batch: usize, device: &Device) -> TokenBatch {
    let ids: Vec<i64> = (0..batch * 8).map(|i| (i % 7) as i64).collect();
    TokenBatch::new(ids, vec![1.0; batch * 8], [batch, 8], device)
}

#[test]
fn every_modality_gives_class_logits() {
    let device = Device::flex();
    for (image, text) in [(true, true), (true, false), (false, true)] {
        let model = config(image, text).init(&device);
        let images = Tensor::zeros([2, 3, 32, 32], &device);
        let out = model
            .forward(Some(images), Some(tokens(2, &device)))
            .unwrap();
        assert_eq!(out.fused.dims(), [2, 3]);
        assert_eq!(out.image.is_some(), image);
        assert_eq!(out.text.is_some(), text);
    }
    let model = config(true, true).init(&device);
    assert!(matches!(model.forward(None, None), Err(Error::NoInput)));
}

#[test]
fn an_ensemble_averages_its_members_probabilities() {
    let device = Device::flex();
    let mut three = config(true, true);
    three.heads = 3;
    let model = three.init(&device);
    assert_eq!(model.extra.len(), 2);
    let images = Tensor::zeros([2, 3, 32, 32], &device);
    let out = model
        .forward(Some(images), Some(tokens(2, &device)))
        .unwrap();
    assert_eq!(out.members.len(), 3);
    let mean = out
        .members
        .iter()
        .map(|m| burn::tensor::activation::softmax(m.fused.clone(), 1))
        .reduce(|a, b| a + b)
        .unwrap()
        / 3.0;
    let scores = out.probabilities().read().unwrap();
    let flat: Vec<f32> = scores.iter().flat_map(|s| s.fused.clone()).collect();
    let expected = mean.into_data().try_into_vec::<f32>().unwrap();
    for (a, b) in flat.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    // The members differ (each has its own heads), and one set of heads has no members.
    assert!(
        scores
            .iter()
            .all(|s| (s.fused.iter().sum::<f32>() - 1.0).abs() < 1e-5)
    );
    let single = config(true, true).init(&device);
    let out = single.forward(None, Some(tokens(2, &device))).unwrap();
    assert!(out.members.is_empty());
}

#[test]
fn late_fusion_combines_the_branch_scores() {
    let device = Device::flex();
    let mut late = config(true, true);
    late.fusion = Fusion::Scores;
    let model = late.init(&device);
    assert!(model.fusion.is_none() && model.late.is_some());
    let images = Tensor::zeros([2, 3, 32, 32], &device);
    let out = model
        .forward(Some(images), Some(tokens(2, &device)))
        .unwrap();
    // The fused logits are the linear layer over [image logits, text logits].
    let scores = Tensor::cat(vec![out.image.unwrap(), out.text.unwrap()], 1);
    let expected = model.late.as_ref().unwrap().forward(scores);
    out.fused
        .into_data()
        .assert_approx_eq::<f32>(&expected.into_data(), Default::default());
    // One branch alone is that branch's head, as with the fusion MLP.
    let text_only = model.forward(None, Some(tokens(2, &device))).unwrap();
    assert!(text_only.image.is_none());
}

#[test]
fn heads_trained_on_features_give_the_full_models_numbers() {
    let device = Device::flex();
    let config = config(true, true);
    let full = config.init(&device);
    let heads = config
        .init_with(Some(Precomputed), Some(Precomputed), &device)
        .unwrap();
    let images = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &device);
    let image_features = full.image_encoder().unwrap().encode(images.clone());
    let text_features = full.text_encoder().unwrap().encode(tokens(2, &device));
    let on_features = heads
        .forward(Some(image_features), Some(text_features))
        .unwrap()
        .fused;
    let joined = full.with_heads_of(heads);
    let end_to_end = joined
        .forward(Some(images), Some(tokens(2, &device)))
        .unwrap()
        .fused;
    end_to_end
        .into_data()
        .assert_approx_eq::<f32>(&on_features.into_data(), Default::default());
    // A branch without its encoder is an error, not a panic.
    assert!(
        config
            .init_with(Some(Precomputed), None::<Precomputed>, &device)
            .is_err()
    );
}
