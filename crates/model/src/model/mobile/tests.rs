use super::*;
use crate::model::Encoder;
use burn::module::RunningState;
use burn::tensor::{Distribution, Tolerance};

fn pictures(device: &Device) -> Tensor<4> {
    Tensor::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn a_split_network_computes_what_the_whole_one_does() {
    let device = Device::flex();
    let cnn = MobileCnn::mobilenet_v2(false, &device);
    let whole = cnn.forward(pictures(&device)).into_data();
    let (lower, top) = cnn.split_top(2);
    assert_eq!(lower.blocks(), 15);
    let split = top.encode(lower.activations(pictures(&device)));
    whole.assert_approx_eq::<f32>(&split.into_data(), Tolerance::default());
    let joined = lower.join(top);
    assert_eq!(joined.blocks(), 17);
    let again = joined.forward(pictures(&device)).into_data();
    whole.assert_approx_eq::<f32>(&again, Tolerance::default());
    // Without blocks or head the top only pools: cached features pass unchanged.
    let features = Tensor::<4>::random([2, FEATURES, 1, 1], Distribution::Default, &device);
    let pooled = MobileTop::pooled().encode(features.clone());
    pooled
        .into_data()
        .assert_eq(&features.flatten::<2>(1, 3).into_data(), true);
}

/// Batch norms with statistics of their own, as a trained network has (a new one's are
/// the identity).
fn with_statistics(c: ConvBn) -> ConvBn {
    let [channels] = c.bn.gamma.dims();
    let device = c.bn.gamma.device();
    let random =
        |low, high| Tensor::<1>::random([channels], Distribution::Uniform(low, high), &device);
    let mut bn = c.bn;
    bn.gamma = Param::from_tensor(random(0.5, 1.5));
    bn.beta = Param::from_tensor(random(-0.5, 0.5));
    bn.running_mean = RunningState::new(random(-0.3, 0.3));
    bn.running_var = RunningState::new(random(0.2, 2.0));
    ConvBn { bn, ..c }
}

#[test]
fn folding_the_batch_norms_keeps_the_features() {
    let device = Device::flex();
    for cnn in [
        MobileCnn::mobilenet_v2(false, &device),
        MobileCnn::efficientnet_lite0(false, &device),
    ] {
        let cnn = cnn.map_convs(&with_statistics);
        let images = pictures(&device);
        let plain = cnn.forward(images.clone()).into_data();
        let folded = cnn.fold_norms();
        assert!(folded.stem.folded && folded.blocks[3].project.folded);
        let features = folded.forward(images).into_data();
        plain.assert_approx_eq::<f32>(&features, Tolerance::absolute(1e-4));
    }
}

#[test]
fn the_cpu_kernels_compute_what_the_burn_network_does() {
    let device = Device::flex();
    for cnn in [
        MobileCnn::mobilenet_v2(false, &device),
        MobileCnn::efficientnet_lite0(false, &device),
    ] {
        let cnn = cnn.map_convs(&with_statistics);
        // Odd sizes too: the padding and the stride-2 phases must not assume even ones.
        for [h, w] in [[64, 64], [45, 37]] {
            let images = Tensor::<4>::random([2, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
            let burn = cnn.forward(images.clone()).into_data();
            let fast = cnn.clone().for_inference();
            assert_eq!(fast.stem.conv.weight.dims(), [0; 4], "not kept twice");
            assert!(fast.cpu.is_some());
            let features = fast.forward(images).into_data();
            burn.assert_approx_eq::<f32>(&features, Tolerance::absolute(1e-4));
        }
    }
}

#[test]
fn the_split_off_tops_batch_norms_are_frozen() {
    let device = Device::flex();
    let (_, top) = MobileCnn::mobilenet_v2(false, &device).split_top(1);
    let head = top.head.as_ref().unwrap();
    // Inference statistics even on a training device (the trainer's test checks that the
    // convolutions get gradients there and the features match inference mode).
    assert!(!head.bn.training.is_enabled());
    assert!(!top.blocks[0].project.bn.training.is_enabled());
}
