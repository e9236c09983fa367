#![cfg(not(target_arch = "wasm32"))]
//! End-to-end: the `train` and `predict` binaries on the committed fixture folder (a dozen real
//! pairs, one with an invalid-UTF-8 caption, two with 48 px pictures), and their errors.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mini")
}

fn bin(name: &str) -> Command {
    Command::cargo_bin(name).unwrap()
}

/// The small from-scratch model, with fast settings for the fixture folder.
fn train(out: &Path, data: &Path, seed: u64) -> assert_cmd::assert::Assert {
    bin("train")
        .arg("--small")
        .args([
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args([
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--val-fraction",
            "0.25",
        ])
        .args([
            "--vocab-size",
            "300",
            "--image-size",
            "32",
            "--max-len",
            "24",
        ])
        .args(["--seed", &seed.to_string(), "--quiet"])
        .assert()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Copy the fixture folder so a test can break it.
fn copy_fixture(to: &Path) {
    std::fs::create_dir_all(to.join("data")).unwrap();
    for entry in std::fs::read_dir(fixture().join("data")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("data").join(entry.file_name())).unwrap();
    }
    for list in ["train.txt", "test_without_label.txt"] {
        std::fs::copy(fixture().join(list), to.join(list)).unwrap();
    }
}

#[test]
fn train_writes_a_model_folder_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train(&a, &fixture(), 3)
        .success()
        .stdout(predicate::str::contains("validation ("));
    train(&b, &fixture(), 3).success();
    for file in [
        "model.bpk",
        "config.json",
        "tokenizer.json",
        "metrics.json",
        "training.svg",
        "confusion.svg",
    ] {
        assert!(a.join(file).is_file(), "{file} missing");
    }
    let metrics = read_json(&a.join("metrics.json"));
    let v = &metrics["validation"];
    assert_eq!(metrics["validation_pairs"], 3);
    assert_eq!(metrics["train_pairs"], 9);
    assert_eq!(metrics["epochs_run"], 2);
    let confusion: u64 = v["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(confusion, 3);
    for key in ["accuracy", "macro_f1", "weighted_f1"] {
        let x = v[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{key} = {x}");
    }
    assert_eq!(v["per_class"].as_array().unwrap().len(), 3);
    assert!(metrics["image_branch"]["accuracy"].is_number());
    assert!(metrics["text_branch"]["accuracy"].is_number());
    // Same seed, same data → same metrics and the same learning curve.
    let again = read_json(&b.join("metrics.json"));
    assert_eq!(again["validation"], metrics["validation"]);
    let losses = |m: &Value| -> Vec<f64> {
        m["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["train_loss"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(losses(&again), losses(&metrics));
    let config = read_json(&a.join("config.json"));
    assert_eq!(
        config["labels"],
        serde_json::json!(["negative", "neutral", "positive"])
    );
    assert_eq!(config["image"]["size"], 32);

    // Batch prediction: `guid,tag` for every listed guid, header first, in list order.
    let csv = dir.path().join("pred.csv");
    bin("predict")
        .args([
            "--model",
            a.to_str().unwrap(),
            "--data",
            fixture().to_str().unwrap(),
        ])
        .args([
            "--list",
            fixture().join("test_without_label.txt").to_str().unwrap(),
        ])
        .args(["--out", csv.to_str().unwrap()])
        .assert()
        .success();
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "guid,tag");
    let guids: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(guids, ["8", "1576", "2320"]);
    for line in &lines[1..] {
        let tag = line.split(',').nth(1).unwrap();
        assert!(["negative", "neutral", "positive"].contains(&tag), "{line}");
    }

    // Single pair: JSON with the label and three probability sets that each sum to 1.
    let out = bin("predict")
        .args(["--model", a.to_str().unwrap()])
        .args(["--image", fixture().join("data/4066.jpg").to_str().unwrap()])
        .args([
            "--text-file",
            fixture().join("data/4597.txt").to_str().unwrap(),
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: Value = serde_json::from_slice(&out).unwrap();
    assert!(["negative", "neutral", "positive"].contains(&json["label"].as_str().unwrap()));
    for part in ["fused", "image", "text"] {
        let probs = json["probabilities"][part].as_object().unwrap();
        let sum: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "{part} sums to {sum}");
    }
    let best = json["probabilities"]["fused"]
        .as_object()
        .unwrap()
        .iter()
        .max_by(|a, b| a.1.as_f64().partial_cmp(&b.1.as_f64()).unwrap())
        .unwrap()
        .0
        .clone();
    assert_eq!(json["label"], best);

    // Errors: corrupt picture, empty caption, missing model folder.
    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 truncated jpeg").unwrap();
    bin("predict")
        .args([
            "--model",
            a.to_str().unwrap(),
            "--image",
            corrupt.to_str().unwrap(),
            "--text",
            "hello",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("corrupt.jpg").and(predicate::str::contains("image")));
    bin("predict")
        .args(["--model", a.to_str().unwrap(), "--text", "   "])
        .assert()
        .failure()
        .stderr(predicate::str::contains("caption is empty"));
    bin("predict")
        .args([
            "--model",
            dir.path().join("nope").to_str().unwrap(),
            "--text",
            "hi",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("nope").and(predicate::str::contains("config.json")));
}

/// The default: frozen pretrained encoders (fetched by `scripts/fetch-encoders.sh`), features
/// cached, heads trained on them, weights stored in f16.
#[test]
fn train_with_pretrained_encoders_caches_features_and_stores_f16() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("features");
    let run = |out: &Path| {
        bin("train")
            .env("MVSA_FEATURES", &cache)
            .args(["--data", fixture().to_str().unwrap()])
            .args(["--out", out.to_str().unwrap()])
            .args([
                "--epochs",
                "3",
                "--batch-size",
                "4",
                "--val-fraction",
                "0.25",
            ])
            .args(["--seed", "5", "--quiet"])
            .assert()
            .success()
            .stdout(predicate::str::contains("validation ("));
        read_json(&out.join("metrics.json"))
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let first = run(&a);
    assert_eq!(first["features"]["image_computed"], 12);
    assert_eq!(first["features"]["text_computed"], 12);
    assert!(cache.join("mobilenet-v2.safetensors").is_file());
    assert!(cache.join("minilm-l6.safetensors").is_file());
    // The second run finds every feature in the cache and trains the same heads.
    let second = run(&b);
    assert_eq!(second["features"]["image_computed"], 0);
    assert_eq!(second["features"]["text_computed"], 0);
    assert_eq!(second["validation"], first["validation"]);
    // The written folder, reloaded with its f16 weights and run end to end, agrees with the
    // validation numbers computed on the cached features in f32.
    assert_eq!(
        first["saved_model"]["confusion"],
        first["validation"]["confusion"]
    );
    let config = read_json(&a.join("config.json"));
    assert_eq!(config["image"]["encoder"], "mobilenet-v2");
    assert_eq!(config["text"]["encoder"], "minilm-l6");
    assert_eq!(config["image"]["size"], 224);
    // f16: about 2 bytes for each of MiniLM's 22.7 M and MobileNetV2's 2.2 M parameters.
    let bytes = std::fs::metadata(a.join("model.bpk")).unwrap().len();
    assert!((45_000_000..60_000_000).contains(&bytes), "{bytes} bytes");
    // And `predict` runs the folder end to end.
    bin("predict")
        .args(["--model", a.to_str().unwrap()])
        .args(["--image", fixture().join("data/4066.jpg").to_str().unwrap()])
        .args(["--text", "what a lovely day"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("positive")
                .or(predicate::str::contains("neutral"))
                .or(predicate::str::contains("negative")),
        );
}

#[test]
fn train_without_fetched_encoders_says_how_to_fetch_them() {
    let dir = tempfile::tempdir().unwrap();
    bin("train")
        .env("MVSA_ENCODERS", dir.path().join("nothing-here"))
        .args(["--data", fixture().to_str().unwrap()])
        .args(["--out", dir.path().join("m").to_str().unwrap()])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("mobilenet_v2.pth is missing")
                .and(predicate::str::contains("scripts/fetch-encoders.sh")),
        );
}

#[test]
fn train_reports_a_missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder");
    bin("train")
        .args([
            "--data",
            missing.to_str().unwrap(),
            "--out",
            dir.path().join("m").to_str().unwrap(),
        ])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("no-such-folder")
                .and(predicate::str::contains("does not exist")),
        );
}

#[test]
fn train_reports_a_bad_label_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data-copy");
    copy_fixture(&data);
    let list = data.join("train.txt");
    let text =
        std::fs::read_to_string(&list)
            .unwrap()
            .replacen("5001,negative", "5001;negative", 1);
    std::fs::write(&list, text).unwrap();
    train(&dir.path().join("m"), &data, 1).failure().stderr(
        predicate::str::contains("train.txt:3").and(predicate::str::contains("5001;negative")),
    );
    let text = std::fs::read_to_string(&list)
        .unwrap()
        .replacen("5001;negative", "5001,sad", 1);
    std::fs::write(&list, text).unwrap();
    train(&dir.path().join("m"), &data, 1)
        .failure()
        .stderr(predicate::str::contains(
            "train.txt:3: guid 5001 has tag \"sad\"",
        ));
}

#[test]
fn train_skips_unreadable_pairs_with_a_counted_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data-copy");
    copy_fixture(&data);
    std::fs::write(data.join("data/2626.jpg"), b"this is not a jpeg").unwrap();
    std::fs::remove_file(data.join("data/4956.txt")).unwrap();
    let out = dir.path().join("m");
    bin("train")
        .args([
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args([
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--val-fraction",
            "0.3",
        ])
        .args(["--small", "--vocab-size", "300", "--image-size", "32"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("skipped 2 of 12 pairs")
                .and(predicate::str::contains("2626.jpg"))
                .and(predicate::str::contains("4956.txt")),
        );
    let metrics = read_json(&out.join("metrics.json"));
    assert_eq!(metrics["skipped"].as_array().unwrap().len(), 2);
    assert_eq!(
        metrics["train_pairs"].as_u64().unwrap() + metrics["validation_pairs"].as_u64().unwrap(),
        10
    );

    // Batch prediction over a list with a broken picture falls back to the caption, with a
    // warning, and still writes every guid.
    std::fs::write(data.join("data/8.jpg"), b"garbage").unwrap();
    bin("predict")
        .args([
            "--model",
            out.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ])
        .args([
            "--list",
            data.join("test_without_label.txt").to_str().unwrap(),
            "--out",
            "-",
        ])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("guid,tag\n8,"))
        .stderr(predicate::str::contains("8.jpg").and(predicate::str::contains("caption alone")));
}

#[test]
fn help_describes_the_commands() {
    bin("train")
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("--modality"));
    bin("predict")
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("--text-file"));
}
