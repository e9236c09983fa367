//! Golden values of the shipped models on three fixture pairs: the preprocessed input and the
//! fused / image / text probabilities. This native test checks `tests/golden/shipped.json`
//! (www/model, pretrained encoders) and `tests/golden/small.json` (www/model-small) against
//! native inference (`UPDATE_GOLDEN=1` rewrites them after retraining); `crates/web/tests/web.rs` checks
//! the same files in the browser, so wasm and native agree through them.

mod support;

use burn::prelude::Device;
use mvsa_model::preprocess::TextPreprocessor;
use mvsa_model::{Classifier, Pair};
use serde_json::{Value, json};

const GUIDS: [&str; 3] = ["4066", "4597", "2626"];
const TOLERANCE: f64 = 1e-5;

#[test]
fn shipped_model_matches_golden_values() {
    check("www/model", "tests/golden/shipped.json");
}

#[test]
fn small_model_matches_golden_values() {
    check("www/model-small", "tests/golden/small.json");
}

/// Padded to the GPU backends' length buckets, every pair gives the probabilities it gives at
/// its own length (padding is masked), and the warm-up runs one input per bucket.
#[test]
fn length_buckets_change_no_probability() {
    let root = support::root();
    let load = || Classifier::load(&root.join("www/model"), &Device::flex()).unwrap();
    let (plain, bucketed) = (load(), load().with_length_buckets());
    let pairs: Vec<(Vec<u8>, String)> = GUIDS.iter().map(|g| support::pair(g)).collect();
    let batch: Vec<Pair> = pairs
        .iter()
        .map(|(image, caption)| Pair {
            image: Some(image),
            caption: Some(caption),
        })
        .collect();
    let prepared: Vec<_> = batch.iter().map(|&p| plain.prepare(p).unwrap()).collect();
    let text = bucketed.text_preprocessor().unwrap();
    let tokens: Vec<_> = prepared.iter().flat_map(|p| p.tokens.as_ref()).collect();
    let longest = tokens.iter().map(|t| t.len()).max().unwrap();
    let width = text.rows(&tokens).shape[1];
    assert!(
        longest == 56 && width == 64,
        "{longest} tokens padded to {width}"
    );
    for (a, b) in plain
        .run(&prepared)
        .unwrap()
        .iter()
        .zip(bucketed.run(&prepared).unwrap())
    {
        for (x, y) in a.scores.fused.iter().zip(&b.scores.fused) {
            assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
        }
    }
    let warm = bucketed.warm_up_inputs().unwrap();
    let widths: Vec<usize> = warm
        .iter()
        .map(|p| p.tokens.as_ref().unwrap().len())
        .collect();
    assert_eq!(widths, text.widths().unwrap());
    assert_eq!(widths, [16, 32, 64, 128]);
    assert!(warm[0].image.is_some() && warm[1..].iter().all(|p| p.image.is_none()));
    assert_eq!(plain.warm_up_inputs().unwrap().len(), 1);
}

/// Emoji are spelled out before MiniLM's tokenizer sees them: "😭💔" and "👍" are no longer the
/// same `[UNK]`s (the wasm test checks the same in the browser).
#[test]
fn emoji_reach_minilm_as_words() {
    let root = support::root();
    let files = mvsa_model::folder::ModelFiles::read(&root.join("www/model")).unwrap();
    let mut branch = files.config.text.clone().unwrap();
    let tokenizer = files.tokenizer.unwrap();
    let encode = |branch: &mvsa_model::config::TextBranchConfig, caption: &str| {
        let text = TextPreprocessor::from_json(&tokenizer, branch.clone()).unwrap();
        let unk = text.tokenizer().token_to_id("[UNK]").unwrap();
        (text.encode(caption).unwrap().ids, unk)
    };
    branch.preprocess.emoji_names = false;
    let (raw_sad, unk) = encode(&branch, "😭💔");
    assert_eq!(
        raw_sad,
        encode(&branch, "👍").0,
        "unspelled, both are [CLS] [UNK] [SEP]"
    );
    assert!(raw_sad.contains(&unk));
    branch.preprocess.emoji_names = true;
    let (sad, good) = (encode(&branch, "😭💔").0, encode(&branch, "👍").0);
    assert_ne!(sad, good);
    assert!(!sad.contains(&unk) && !good.contains(&unk));
}

fn check(folder: &str, golden_file: &str) {
    let root = support::root();
    let classifier = Classifier::load(&root.join(folder), &Device::flex()).unwrap();
    let mut pairs = Vec::new();
    for guid in GUIDS {
        let (image, caption) = support::pair(guid);
        let pair = Pair {
            image: Some(&image),
            caption: Some(&caption),
        };
        let prepared = classifier.prepare(pair).unwrap();
        let pixels = prepared.image.clone().unwrap();
        let p = classifier
            .run(std::slice::from_ref(&prepared))
            .unwrap()
            .remove(0);
        pairs.push(json!({
            "guid": guid,
            "caption": caption,
            "pixel_sum": pixels.iter().map(|&v| v as f64).sum::<f64>(),
            "pixels_head": &pixels[..16],
            "tokens": prepared.tokens.unwrap().ids,
            "label": p.label,
            "fused": p.scores.fused,
            "image": p.scores.image,
            "text": p.scores.text,
        }));
    }
    let current = json!({ "pairs": pairs });
    let path = root.join(golden_file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&current).unwrap()).unwrap();
    }
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .expect("the golden file exists; run with UPDATE_GOLDEN=1 after retraining");
    for (now, then) in current["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(golden["pairs"].as_array().unwrap())
    {
        assert_eq!(now["tokens"], then["tokens"]);
        assert_eq!(now["label"], then["label"]);
        for key in ["pixel_sum", "pixels_head", "fused", "image", "text"] {
            let flat = |v: &Value| -> Vec<f64> {
                match v {
                    Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
                    x => vec![x.as_f64().unwrap()],
                }
            };
            for (a, b) in flat(&now[key]).iter().zip(flat(&then[key])) {
                let scale = if key == "pixel_sum" {
                    b.abs().max(1.0)
                } else {
                    1.0
                };
                assert!(
                    (a - b).abs() <= TOLERANCE * scale,
                    "{key}: {a} vs golden {b}"
                );
            }
        }
    }
}
