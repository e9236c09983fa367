#![cfg(not(target_arch = "wasm32"))]
//! The model folder format: config + tokenizer + burnpack weights saved, loaded back, and giving
//! identical predictions; mismatched or broken parts give errors, not panics.

use std::path::Path;

use burn::prelude::*;
use mvsa_sentiment::inference::Prepared;
use mvsa_sentiment::model::ModelInput;
use mvsa_sentiment::preprocess::{TextPreprocessor, decode_caption, train_tokenizer};
use mvsa_sentiment::{Classifier, Error, Modality, ModelConfig};

fn fixture_pairs() -> Vec<(Vec<u8>, String)> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mini/data");
    let mut guids: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".jpg").map(str::to_string)
        })
        .collect();
    guids.sort();
    guids
        .iter()
        .map(|g| {
            let image = std::fs::read(data.join(format!("{g}.jpg"))).unwrap();
            let caption = decode_caption(&std::fs::read(data.join(format!("{g}.txt"))).unwrap());
            (image, caption)
        })
        .collect()
}

/// A small model whose batch-norm statistics have moved away from their initial values, so a
/// load that dropped them would show.
fn trained_looking_model(pairs: &[(Vec<u8>, String)]) -> (ModelConfig, Classifier) {
    let tokenizer = train_tokenizer(pairs.iter().map(|p| p.1.as_str()), 300).unwrap();
    let mut config = ModelConfig::new(Modality::Both, tokenizer.get_vocab_size(true));
    config.image.size = 32;
    config.image.resize = 36;
    config.text.max_len = 24;
    let text = TextPreprocessor::new(tokenizer, config.text.clone()).unwrap();
    let device = Device::flex().autodiff();
    device.seed(11);
    let model = config.init(&device);
    let plain = Device::flex();
    let helper = Classifier::new(config.clone(), model.valid(), text.clone(), &plain);
    let prepared: Vec<Prepared> = pairs
        .iter()
        .map(|(i, c)| helper.prepare(Some(i), Some(c)).unwrap())
        .collect();
    // Training-mode forwards update batch-norm running statistics.
    for _ in 0..3 {
        let pixels = prepared
            .iter()
            .flat_map(|p| p.image.clone().unwrap())
            .collect();
        let images = ModelInput::images(pixels, prepared.len(), 32, &device);
        let tokens = ModelInput::tokens(
            prepared.iter().map(|p| p.tokens.as_ref().unwrap()),
            &config.text,
            &device,
        );
        let _ = model.forward(ModelInput {
            images: Some(images),
            tokens: Some(tokens),
        });
    }
    (
        config.clone(),
        Classifier::new(config, model.valid(), text, &plain),
    )
}

#[test]
fn saved_and_loaded_models_predict_identically() {
    let pairs = fixture_pairs();
    let (config, original) = trained_looking_model(&pairs);
    let device = Device::flex();
    let weights = original
        .model()
        .clone()
        .into_record()
        .into_bytes()
        .unwrap()
        .to_vec();
    let tokenizer = original
        .text_preprocessor()
        .tokenizer()
        .to_string(false)
        .unwrap();
    let loaded = Classifier::from_bytes(
        config.to_json().as_bytes(),
        tokenizer.as_bytes(),
        weights.clone(),
        &device,
    )
    .unwrap();
    assert_eq!(loaded.config(), &config);

    let classify = |c: &Classifier| {
        let prepared: Vec<Prepared> = pairs
            .iter()
            .map(|(i, t)| c.prepare(Some(i), Some(t)).unwrap())
            .collect();
        c.classify_prepared(&prepared).unwrap()
    };
    let (a, b) = (classify(&original), classify(&loaded));
    assert_eq!(a.len(), pairs.len());
    assert_eq!(a, b, "loaded model must predict exactly like the saved one");

    // A freshly initialised model of the same shape predicts differently: the load mattered.
    device.seed(99);
    let fresh = Classifier::new(
        config.clone(),
        config.init(&device),
        loaded.text_preprocessor().clone(),
        &device,
    );
    assert_ne!(classify(&fresh), a);

    // Each part of the folder can be wrong; each gives its own error.
    let mut other = config.clone();
    other.text.embed_dim += 8;
    let err = Classifier::from_bytes(
        other.to_json().as_bytes(),
        tokenizer.as_bytes(),
        weights.clone(),
        &device,
    );
    assert!(matches!(err, Err(Error::Weights(_))), "{:?}", err.err());
    let err = Classifier::from_bytes(
        config.to_json().as_bytes(),
        tokenizer.as_bytes(),
        b"not burnpack".to_vec(),
        &device,
    );
    assert!(matches!(err, Err(Error::Weights(_))));
    let err = Classifier::from_bytes(config.to_json().as_bytes(), b"{}", weights.clone(), &device);
    assert!(matches!(err, Err(Error::Tokenizer(_))));
    let err = Classifier::from_bytes(b"{\"labels\": []}", tokenizer.as_bytes(), weights, &device);
    assert!(matches!(err, Err(Error::Config(_))));
}

#[test]
fn branch_probabilities_and_partial_inputs() {
    let pairs = fixture_pairs();
    let (_, classifier) = trained_looking_model(&pairs);
    let (image, caption) = &pairs[0];
    let both = classifier.classify(Some(image), Some(caption)).unwrap();
    for probs in [Some(&both.fused), both.image.as_ref(), both.text.as_ref()] {
        let probs = probs.expect("both branches report");
        assert_eq!(probs.len(), 3);
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // One part alone: that branch's head is the answer, and agrees with its value above.
    let text_only = classifier.classify(None, Some(caption)).unwrap();
    assert!(text_only.image.is_none());
    assert_eq!(text_only.fused, text_only.text.clone().unwrap());
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
    assert!(close(&text_only.fused, both.text.as_ref().unwrap()));
    let image_only = classifier.classify(Some(image), None).unwrap();
    assert!(close(&image_only.fused, both.image.as_ref().unwrap()));
    assert!(matches!(
        classifier.classify(None, None),
        Err(Error::NoInput)
    ));
    assert!(matches!(
        classifier.classify(Some(b"nope"), Some("hi")),
        Err(Error::Image(_))
    ));
}

#[test]
fn shipped_model_folders_load_and_match_their_metrics() {
    for folder in ["www/model", "www/model-small"] {
        shipped_folder_matches_its_metrics(folder);
    }
}

fn shipped_folder_matches_its_metrics(folder: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let classifier = Classifier::load(&dir, &Device::flex()).expect("the model folder loads");
    assert_eq!(
        classifier.config().labels,
        ["negative", "neutral", "positive"]
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    // The metrics file describes this model: same modality and encoders as its config (and,
    // for the scratch CNN, the same image size), a confusion matrix that adds up to the
    // validation count, and better than the majority class (59.7 %) on its own validation
    // split.
    let options = &metrics["options"];
    let config = classifier.config();
    assert_eq!(options["modality"], "both");
    assert_eq!(options["image_encoder"], config.image.encoder.name());
    assert_eq!(options["text_encoder"], config.text.encoder.name());
    if !config.image.encoder.is_pretrained() {
        assert_eq!(
            options["image_size"].as_u64().unwrap() as usize,
            config.image.size
        );
    }
    let validation = &metrics["validation"];
    let total: u64 = validation["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(total, metrics["validation_pairs"].as_u64().unwrap());
    let accuracy = validation["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.597, "{folder}: accuracy {accuracy}");
    // A folder written with f16 weights was re-evaluated end to end as saved: the rounding
    // costs at most a pair or two.
    if let Some(saved) = metrics["saved_model"]["accuracy"].as_f64() {
        let pairs = metrics["validation_pairs"].as_f64().unwrap();
        assert!(
            (saved - accuracy).abs() <= 2.5 / pairs,
            "{saved} vs {accuracy}"
        );
    }
    for file in ["training.svg", "confusion.svg"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    // And it classifies the fixture pairs into valid distributions.
    for (image, caption) in fixture_pairs() {
        let p = classifier.classify(Some(&image), Some(&caption)).unwrap();
        assert!((p.fused.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(classifier.config().labels.contains(&p.label));
    }
}
