//! Golden values of the shipped models on three fixture pairs: the preprocessed input and the
//! fused / image / text probabilities. This native test checks `tests/golden/shipped.json`
//! (www/model, pretrained encoders) and `tests/golden/small.json` (www/model-small) against
//! native inference (`UPDATE_GOLDEN=1` rewrites them after retraining); `crates/web/tests/web.rs` checks
//! the same files in the browser, so wasm and native agree through them.

mod support;

use burn::prelude::Device;
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
