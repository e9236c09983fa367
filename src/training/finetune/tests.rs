use super::*;
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Tolerance};
use mvsa_model::config::{ImageBranchConfig, MiniLmConfig, TextBranchConfig, TextEncoderConfig};
use mvsa_model::model::Encoder;
use rand::SeedableRng;

use crate::progress::Quiet;
use crate::training::TrainingOptions;
use crate::training::heads::Features;

#[test]
fn gradients_reach_the_picture_encoders_top_and_mirrors_are_drawn() {
    let config = ModelConfig::new(Some(ImageBranchConfig::mobilenet_v2()), Some(minilm()));
    let device = Device::flex();
    let shape = match &config.text.as_ref().unwrap().encoder {
        TextEncoderConfig::MinilmL6(shape) => shape.clone(),
        _ => unreachable!(),
    };
    let image = ImageEncoder::Pretrained(MobileCnn::mobilenet_v2(false, &device));
    let regime = FineTune::new(
        &config,
        Some(image),
        (2, 1e-4),
        MiniLm::new(&shape, &device),
        (0, 1e-4),
        &device,
    )
    .unwrap();
    assert_eq!(regime.image_lower().unwrap().blocks(), 16);
    let examples: Vec<Labelled<States>> = (0..8)
        .map(|i| Labelled {
            input: States {
                image: Some(Activations {
                    shape: [160, 2, 2],
                    centre: vec![0.0; 160 * 4],
                    mirrored: Some(vec![1.0; 160 * 4]),
                }),
                states: vec![0.1 * i as f32; 3 * 8],
                id: i,
            },
            label: i % 3,
        })
        .collect();
    let refs: Vec<&Labelled<States>> = examples.iter().collect();
    let autodiff = device.clone().autodiff();
    let model = regime.init(&autodiff).unwrap();
    let batch = regime.batch(&refs, None, &autodiff);
    let output = model.forward(batch.image, batch.text).unwrap();
    let mut grads = output.fused.sum().backward();
    let top = GradientsParams::from_module(&mut grads, model.image_encoder().unwrap());
    assert!(!top.is_empty(), "the picture's top layers get no gradient");
    assert_eq!(regime.lr_groups(&model).len(), 1, "MiniLM is frozen here");
    // Batch norm keeps ImageNet's statistics while training: the same features as the
    // model in inference mode.
    let maps = || Tensor::<4>::random([4, 160, 2, 2], Distribution::Default, &device);
    let x = maps();
    let training = model
        .image_encoder()
        .unwrap()
        .encode(x.clone().to_device(&autodiff));
    let inference = model.valid().image_encoder().unwrap().encode(x);
    let training = training.to_device(&device).into_data();
    training.assert_approx_eq::<f32>(&inference.into_data(), Tolerance::default());
    // Evaluation sees the centre crop; training draws the mirror image about half the time.
    let sum = |rng| {
        let batch = regime.batch(&refs, rng, &device);
        batch.image.unwrap().sum().into_scalar::<f32>() / (160.0 * 4.0)
    };
    assert_eq!(sum(None), 0.0);
    let mirrored = sum(Some(&mut StdRng::seed_from_u64(1)));
    assert!((1.0..8.0).contains(&mirrored), "{mirrored} of 8 mirrored");
    // Mirror test-time augmentation: a second view, every picture mirrored.
    assert_eq!(regime.views(), 1);
    let regime = regime.with_mirror_tta(true);
    assert_eq!(regime.views(), 2);
    let view = |v| regime.view(&refs, v, &device).image.unwrap().sum();
    assert_eq!(view(0).into_scalar::<f32>(), 0.0);
    assert_eq!(view(1).into_scalar::<f32>(), 8.0 * 160.0 * 4.0);
}

/// A regime with a frozen picture encoder and one of three tiny MiniLM layers tuned, and
/// `n` pairs for it (pooled picture features; two tokens' states; ids `0..n`).
fn frozen_picture(n: usize) -> (ModelConfig, FineTune, Vec<Labelled<States>>) {
    let config = ModelConfig::new(Some(ImageBranchConfig::mobilenet_v2()), Some(minilm()));
    let device = Device::flex();
    let image = ImageEncoder::Pretrained(MobileCnn::mobilenet_v2(false, &device));
    let minilm = MiniLm::new(&shape(), &device);
    let regime = FineTune::new(&config, Some(image), (0, 0.0), minilm, (1, 1e-4), &device);
    let examples = (0..n)
        .map(|i| Labelled {
            input: States {
                image: Some(Activations {
                    shape: [1280, 1, 1],
                    centre: vec![i as f32 / 4.0; 1280],
                    mirrored: None,
                }),
                states: vec![0.1 * i as f32; 2 * 8],
                id: i,
            },
            label: i % 3,
        })
        .collect();
    (config, regime.unwrap(), examples)
}

#[test]
fn frozen_pictures_draw_no_random_numbers() {
    let (_, regime, examples) = frozen_picture(4);
    let device = Device::flex();
    assert!(regime.image_lower().is_none() && regime.image_frozen().is_some());
    let refs: Vec<&Labelled<States>> = examples.iter().collect();
    let mut rng = StdRng::seed_from_u64(7);
    let batch = regime.batch(&refs, Some(&mut rng), &device);
    assert_eq!(batch.image.unwrap().dims(), [4, 1280, 1, 1]);
    let untouched: u64 = StdRng::seed_from_u64(7).random();
    assert_eq!(rng.random::<u64>(), untouched);
}

#[test]
fn a_teacher_sets_the_training_targets_and_brings_its_unlabelled_pairs() {
    let device = Device::flex();
    // Three labelled pairs and one unlabelled; the teacher reads its own features of them.
    let (config, regime, mut examples) = frozen_picture(4);
    let unlabelled = examples.pop().unwrap().input;
    let features = |i: usize| Features {
        image: Some(vec![i as f32 / 4.0; 1280]),
        text: Some(vec![i as f32; 8]),
    };
    let labelled = (0..3).map(features).collect();
    let options = TrainingOptions::heads_only();
    let teacher = Teacher::new(&config, labelled, vec![features(3)], 0.5, options);
    let regime = regime.with_teacher(teacher.unwrap(), 3, vec![unlabelled]);
    let regime = regime.unwrap();
    let train: Vec<&Labelled<States>> = examples.iter().collect();
    let mut rng = StdRng::seed_from_u64(1);
    // No teacher fitted yet: no unlabelled pairs, no targets but the labels.
    assert!(regime.unlabelled().is_empty());
    let targets = |batch: &[&Labelled<States>], rng: Option<&mut StdRng>| {
        regime.batch(batch, rng, &device).targets
    };
    assert!(targets(&train, Some(&mut rng)).is_none());
    regime.prepare(&train, &device, &Quiet).unwrap();
    let unlabelled = regime.unlabelled();
    assert_eq!(unlabelled.len(), 1);
    // Training: pair 1's target is half its class, half the teacher's; the unlabelled
    // pair's the teacher's alone (by ids: the regime tells which pairs are labelled).
    let batch = [train[1], &unlabelled[0]];
    let rows = targets(&batch, Some(&mut rng)).unwrap().into_data();
    let rows: Vec<f32> = rows.try_to_vec::<f32>().unwrap();
    let taught = regime.taught.as_ref().unwrap();
    taught.assert_targets(&rows, (1, 1), 3, &device);
    // Pair 1's row is its class mixed with the teacher's: at least half on class 1.
    assert!(
        rows[1] >= 0.5 && rows[0] <= 0.5 && rows[2] <= 0.5,
        "{rows:?}"
    );
    assert!(targets(&batch, None).is_none());
}

fn minilm() -> TextBranchConfig {
    TextBranchConfig::minilm(shape())
}

fn shape() -> MiniLmConfig {
    crate::training::tiny_minilm(3)
}

#[test]
fn gradients_reach_the_top_layers() {
    let shape = shape();
    let config = ModelConfig::new(None, Some(minilm()));
    let device = Device::flex();
    let regime = FineTune::new(
        &config,
        None,
        (0, 1e-4),
        MiniLm::new(&shape, &device),
        (1, 1e-4),
        &device,
    )
    .unwrap();
    let autodiff = device.clone().autodiff();
    let model = regime.init(&autodiff).unwrap();
    let examples: Vec<Labelled<States>> = (0..2)
        .map(|i| Labelled {
            input: States {
                image: None,
                states: vec![0.1 * i as f32 + 0.3; 3 * 8],
                id: i,
            },
            label: i,
        })
        .collect();
    let refs: Vec<&Labelled<States>> = examples.iter().collect();
    let batch = regime.batch(&refs, None, &autodiff);
    let output = model.forward(batch.image, batch.text).unwrap();
    let mut grads = output.fused.sum().backward();
    let top = GradientsParams::from_module(&mut grads, model.text_encoder().unwrap());
    assert!(!top.is_empty(), "the top layers get no gradient");
    assert_eq!(regime.lr_groups(&model).len(), 1);
}
