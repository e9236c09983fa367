//! The pretrained encoders are faithful ports: the ImageNet CNNs put photos in their classes, and
//! MiniLM's embeddings match reference values computed independently (numpy, from the original
//! safetensors; `scripts/reference/minilm_reference.py`) and rank a paraphrase above an
//! unrelated sentence. Needs `bash scripts/fetch-encoders.sh` first (the test command runs it).

mod support;

use burn::prelude::*;
use mvsa_model::config::{ImageBranchConfig, TextBranchConfig};
use mvsa_model::model::{Encoder, TokenBatch, image_batch};
use mvsa_model::preprocess::{ImagePreprocessor, TextPreprocessor, Tokens};
use serde::Deserialize;

/// Photo, and the ImageNet classes that count as right (near-synonyms such as tabby / tiger
/// cat are one class to a person, and torchvision's own top-1 varies between them).
const PHOTOS: [(&str, &[usize]); 3] = [
    ("tabby-cat.jpg", &[281, 282, 285]),
    ("espresso.jpg", &[967, 968, 504]),
    ("tripod.jpg", &[872, 759]),
];

fn top1(branch: ImageBranchConfig) -> Vec<(usize, f32)> {
    let device = Device::flex();
    let cnn = support::encoders()
        .imagenet_classifier(&branch.encoder, &device)
        .unwrap();
    let pre = ImagePreprocessor::new(branch.preprocess.clone());
    let pixels: Vec<f32> = PHOTOS
        .iter()
        .flat_map(|(file, _)| {
            let path = support::root().join("tests/fixtures/imagenet").join(file);
            pre.preprocess(&std::fs::read(path).unwrap()).unwrap()
        })
        .collect();
    let images = image_batch(pixels, PHOTOS.len(), branch.preprocess.size, &device);
    let probs = burn::tensor::activation::softmax(cnn.classify(images).unwrap(), 1);
    let probs = probs.into_data().try_to_vec::<f32>().unwrap();
    probs
        .chunks(1000)
        .map(|p| {
            let best = (0..1000).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            (best, p[best])
        })
        .collect()
}

fn check_photos(branch: ImageBranchConfig) {
    let name = branch.encoder.name();
    for ((file, classes), (class, prob)) in PHOTOS.iter().zip(top1(branch)) {
        assert!(
            classes.contains(&class),
            "{name} put {file} in ImageNet class {class} (p = {prob:.2}), expected one of {classes:?}"
        );
        assert!(prob > 0.2, "{name} is unsure about {file}: p = {prob:.2}");
    }
}

#[test]
fn mobilenet_v2_classifies_imagenet_photos() {
    check_photos(ImageBranchConfig::mobilenet_v2());
}

#[test]
fn efficientnet_lite0_classifies_imagenet_photos() {
    check_photos(ImageBranchConfig::efficientnet_lite0());
}

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    sentence: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

/// Largest absolute difference allowed per embedding component (components are ~0.05 in size;
/// f32 summation order differs between numpy and Burn).
const TOLERANCE: f32 = 1e-5;

#[test]
fn minilm_matches_reference_embeddings() {
    let path = support::root().join("tests/golden/minilm.json");
    let reference: Reference = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let device = Device::flex();
    let files = support::encoders();
    let shape = files.minilm_config().unwrap();
    let model = files.minilm(&shape, &device).unwrap();
    let text = TextPreprocessor::new(
        files.minilm_tokenizer().unwrap(),
        TextBranchConfig::minilm(shape),
    )
    .unwrap();

    let tokens: Vec<Tokens> = reference
        .sentences
        .iter()
        .map(|s| text.encode(&s.sentence).unwrap())
        .collect();
    for (t, s) in tokens.iter().zip(&reference.sentences) {
        assert_eq!(t.ids, s.ids, "token ids of {:?}", s.sentence);
    }
    // One padded batch: masking must make every row equal to its unpadded reference.
    let batch = || {
        let rows = text.rows(&tokens.iter().collect::<Vec<_>>());
        TokenBatch::new(rows.ids, rows.mask, rows.shape, &device)
    };
    let embeddings = model
        .encode(batch())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let rows: Vec<&[f32]> = embeddings.chunks(384).collect();
    for (row, s) in rows.iter().zip(&reference.sentences) {
        let worst = row
            .iter()
            .zip(&s.embedding)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < TOLERANCE,
            "{:?}: max |burn - numpy| = {worst:e}",
            s.sentence
        );
        eprintln!("{:?}: max |burn - numpy| = {worst:.1e}", s.sentence);
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "embedding not L2-normalised: {norm}"
        );
    }
    // Fine-tuning runs the top layers on cached states of the lower ones: the same numbers.
    let (lower, top) = model.split_top(2);
    let split = top
        .encode(lower.hidden_states(batch()))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let worst = split
        .iter()
        .zip(&embeddings)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-6, "split forward differs by {worst:e}");

    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let paraphrase = cos(rows[0], rows[1]);
    let unrelated = cos(rows[0], rows[2]);
    assert!(
        paraphrase > unrelated + 0.3,
        "paraphrase {paraphrase:.3} vs unrelated {unrelated:.3}"
    );
}
