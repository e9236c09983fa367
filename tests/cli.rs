//! End-to-end: the `train` and `predict` binaries on the committed fixture folder (a dozen real
//! pairs, one with an invalid-UTF-8 caption, two with 48 px pictures), and their errors.

mod support;

use std::path::Path;

use burn::store::ModuleSnapshot;
use mvsa_model::folder::ModelFiles;
use mvsa_model::model::SentimentModel;
use mvsa_sentiment::pipeline::precision::{MAX_ACCURACY_LOSS, MAX_MACRO_F1_LOSS};
use predicates::prelude::*;
use serde_json::Value;
use support::{arg, bin, copy_fixture, fixture, predict, read_json, train, train_small};

/// The training loss of each epoch.
fn losses(metrics: &Value) -> Vec<f64> {
    let history = metrics["history"].as_array().unwrap();
    history
        .iter()
        .map(|h| h["train_loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn train_writes_a_model_folder_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train_small(&fixture(), &a, 2, 3).assert().success().stdout(
        predicate::str::contains("validation (")
            .and(predicate::str::is_match(r"took \d+(\.\d min| s)\n").unwrap()),
    );
    train_small(&fixture(), &b, 2, 3).assert().success();
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
    assert_eq!(losses(&again), losses(&metrics));
    let config = read_json(&a.join("config.json"));
    assert_eq!(
        config["labels"],
        serde_json::json!(["negative", "neutral", "positive"])
    );
    assert_eq!(config["image"]["preprocess"]["size"], 32);
}

/// `--cv`: stratified folds that hold out every pair once, mean ± sd per branch, then the
/// final model trained on every pair for the epoch count the folds chose.
#[test]
fn cross_validation_estimates_then_trains_on_every_pair() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cv");
    train_small(&fixture(), &out, 3, 3)
        .args(["--cv", "3", "--weights", "f32"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("3-fold cross-validation over 12 pairs").and(
                predicate::str::is_match(
                    r"took \d+(\.\d min| s) \((.*, )?\d+(\.\d min| s) cross-validating\)",
                )
                .unwrap(),
            ),
        );
    let metrics = read_json(&out.join("metrics.json"));
    let cv = &metrics["cross_validation"];
    assert_eq!(cv["folds"], 3);
    assert_eq!(cv["pairs"], 12);
    let folds = cv["per_fold"].as_array().unwrap();
    assert_eq!(folds.len(), 3);
    let held_out: u64 = folds.iter().map(|f| f["count"].as_u64().unwrap()).sum();
    assert_eq!(held_out, 12, "every pair held out by exactly one fold");
    // The pooled out-of-fold predictions are the validation numbers, over all 12 pairs, and
    // the reported mean is the folds' mean.
    assert_eq!(metrics["validation"]["count"], 12);
    let mean: f64 = folds
        .iter()
        .map(|f| f["accuracy"].as_f64().unwrap())
        .sum::<f64>()
        / 3.0;
    assert!((cv["fused"]["accuracy"]["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    for part in ["fused", "image", "text"] {
        assert!(
            cv[part]["macro_f1"]["sd"].as_f64().unwrap() >= 0.0,
            "{part}"
        );
    }
    // The final fit: every pair, for the chosen number of epochs (of the 3 the folds ran).
    let epochs = cv["epochs"].as_u64().unwrap();
    assert!((1..=3).contains(&epochs));
    assert_eq!(metrics["train_pairs"], 12);
    assert_eq!(metrics["epochs_run"], epochs);
    assert_eq!(
        metrics["history"].as_array().unwrap().len(),
        3,
        "the folds' mean curve"
    );
    assert_eq!(
        metrics["saved_model"]["confusion"],
        metrics["trained_model"]["confusion"]
    );
    let confusion = std::fs::read_to_string(out.join("confusion.svg")).unwrap();
    assert!(confusion.contains("Out of fold, 3-fold cross-validation: accuracy"));
}

/// `--weights-try` under `--cv`: f32 measured first, then each part in turn on the folds'
/// written models; the folder is written with the parts kept, and `metrics.json` lists them all.
#[test]
fn weights_try_measures_each_part_and_writes_the_kept_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tried");
    train_small(&fixture(), &out, 2, 3)
        .args(["--cv", "2", "--weights", "f16"])
        .args([
            "--weights-try",
            "word-embeddings=int4,stem=int8,matrices=int4",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "weights f16,word-embeddings=int4: ",
        ))
        .stdout(predicate::str::contains("  written (f16"));
    let metrics = read_json(&out.join("metrics.json"));
    let rows = metrics["precision"].as_array().unwrap();
    let plans: Vec<&str> = rows
        .iter()
        .map(|r| r["weights"].as_str().unwrap())
        .collect();
    assert_eq!(plans[..3], ["f32", "f16", "f16,word-embeddings=int4"]);
    assert_eq!(plans.len(), 5, "{plans:?}");
    assert_eq!(rows[0]["within"], true, "the reference");
    let bytes = |i: usize| rows[i]["bytes"].as_u64().unwrap();
    assert!(bytes(1) * 2 < bytes(0) + 64 * 1024, "f16 is half of f32");
    assert!(bytes(2) < bytes(1), "4-bit embeddings are smaller");
    // Each row against f32 within the tolerance, or not kept: the plan written is the last
    // row kept, and its file is the size the study measured.
    let f32 = (
        rows[0]["accuracy"].as_f64().unwrap(),
        rows[0]["macro_f1"].as_f64().unwrap(),
    );
    for row in rows {
        let loss = f32.0 - row["accuracy"].as_f64().unwrap();
        let f1_loss = f32.1 - row["macro_f1"].as_f64().unwrap();
        let within = loss <= MAX_ACCURACY_LOSS + 1e-9 && f1_loss <= MAX_MACRO_F1_LOSS + 1e-9;
        assert_eq!(row["within"], within, "{row}");
    }
    let written = rows.iter().rposition(|r| r["within"] == true).unwrap();
    assert_eq!(metrics["weights"], rows[written.max(1)]["weights"]);
    let size = std::fs::metadata(out.join("model.bpk")).unwrap().len();
    assert_eq!(size, bytes(written.max(1)));
}

/// The shipped model's `guid,tag` file for the fixture folder: the page's folder mode must
/// write the same bytes (tests/e2e/folder.test.mjs reads this file). `UPDATE_GOLDEN=1`
/// rewrites it after retraining.
#[test]
fn shipped_model_predicts_the_fixture_folder_as_the_golden_file_says() {
    let out = predict(&support::root().join("www/model"))
        .args(["--data", arg(&fixture())])
        .args(["--list", arg(&fixture().join("test_without_label.txt"))])
        .args(["--out", "-"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let golden = support::root().join("tests/golden/mini-predictions.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &out).unwrap();
    }
    let expected = std::fs::read(&golden).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

#[test]
fn predict_writes_the_lab_format_and_single_pairs_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    train_small(&fixture(), &a, 1, 3).assert().success();

    // Batch prediction: `guid,tag` for every listed guid, header first, in list order.
    let csv = dir.path().join("pred.csv");
    predict(&a)
        .args(["--data", arg(&fixture())])
        .args(["--list", arg(&fixture().join("test_without_label.txt"))])
        .args(["--out", arg(&csv)])
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
    let out = predict(&a)
        .args(["--image", arg(&fixture().join("data/4066.jpg"))])
        .args(["--text-file", arg(&fixture().join("data/4597.txt"))])
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
    predict(&a)
        .args(["--image", arg(&corrupt), "--text", "hello"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("corrupt.jpg")
                .and(predicate::str::contains("cut short"))
                .and(predicate::str::contains("\n)").not()),
        );
    predict(&a)
        .args(["--text", "   "])
        .assert()
        .failure()
        .stderr(predicate::str::contains("caption is empty"));
    predict(&dir.path().join("nope"))
        .args(["--text", "hi"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("nope").and(predicate::str::contains("config.json")));
}

/// The default: pretrained encoders (fetched by `scripts/fetch-encoders.sh`), MobileNetV2's
/// features cached, MiniLM's top layers fine-tuned on states of the lower ones, weights stored
/// in int8; and heads alone on cached features of both encoders.
#[test]
fn train_with_pretrained_encoders_caches_features_and_stores_int8() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("features");
    let run = |out: &Path, extra: &[&str]| {
        train(&fixture(), out, 3, 5)
            .args(["--feature-cache", arg(&cache)])
            .args(extra)
            .assert()
            .success()
            .stdout(predicate::str::contains("validation ("));
        read_json(&out.join("metrics.json"))
    };
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let first = run(&a, &[]);
    // Fine-tuning reads MiniLM's states below its top two layers, cached like the features.
    assert_eq!(first["features"]["image_computed"], 12);
    assert_eq!(first["features"]["text_computed"], 12);
    assert!(cache.join("mobilenet-v2.safetensors").is_file());
    assert!(cache.join("minilm-l6-states4.safetensors").is_file());
    // The second run finds every picture's features and caption's states in the cache and
    // trains the same model (stored in f32 this time).
    let second = run(&b, &["--weights", "f32"]);
    assert_eq!(second["features"]["image_computed"], 0);
    assert_eq!(second["features"]["text_computed"], 0);
    assert_eq!(second["validation"], first["validation"]);
    assert_eq!(losses(&second), losses(&first));
    // Heads alone read both encoders' features, MiniLM's computed once.
    let heads = run(&c, &["--finetune-layers", "0", "--weights", "f32"]);
    assert_eq!(heads["features"]["image_computed"], 0);
    assert_eq!(heads["features"]["text_computed"], 12);
    assert!(cache.join("minilm-l6.safetensors").is_file());
    // MobileNetV2's head conv and last block fine-tuned too, on its lower blocks' activations
    // of each picture and of its mirror image (MiniLM frozen: states of all six layers).
    let d = dir.path().join("d");
    let tuned = run(
        &d,
        &[
            "--finetune-layers",
            "0",
            "--finetune-image-layers",
            "2",
            "--weights",
            "f32",
        ],
    );
    assert_eq!(tuned["features"]["image_computed"], 24);
    assert!(
        cache
            .join("mobilenet-v2-blocks16-mirrored.safetensors")
            .is_file()
    );
    assert!(cache.join("minilm-l6-states6.safetensors").is_file());
    // The small model: MobileNetV2's cached features beside a BiLSTM trained from scratch.
    let e = dir.path().join("e");
    let small = ["--small", "--vocab-size", "300", "--max-len", "24"];
    let small = run(&e, &[&small[..], &["--weights", "f32"]].concat());
    assert_eq!(small["features"]["image_computed"], 0);
    let config = read_json(&e.join("config.json"));
    assert_eq!(config["image"]["encoder"]["kind"], "mobilenet-v2");
    assert_eq!(config["text"]["encoder"]["kind"], "scratch");
    assert_eq!(
        small["saved_model"]["confusion"],
        small["validation"]["confusion"]
    );
    // Distilled, cross-validated: a teacher per fold and one for the final fit, each fitted on
    // the pairs its student trains on, and the test list's pairs labelled by it.
    let f = dir.path().join("f");
    let distilled = train(&fixture(), &f, 2, 5)
        .args([
            "--feature-cache",
            arg(&cache),
            "--small",
            "--vocab-size",
            "300",
        ])
        .args(["--distil", "0.5", "--cv", "2", "--weights", "f32"])
        .assert()
        .success();
    let log = String::from_utf8_lossy(&distilled.get_output().stderr).into_owned();
    assert!(log.contains("3 unlabelled pairs from"), "{log}");
    let teachers: Vec<&str> = log.lines().filter(|l| l.contains("teacher on")).collect();
    assert_eq!(teachers.len(), 3, "{log}");
    assert!(teachers[0].contains("teacher on 6 pairs") && teachers[2].contains("on 12 pairs"));
    let metrics = read_json(&f.join("metrics.json"));
    assert_eq!(metrics["options"]["distil"], 0.5);
    assert_eq!(metrics["options"]["teacher"], "minilm");
    // The default model distilled the same way while MiniLM's top layers are fine-tuned: the
    // test list's captions get MiniLM's lower states too, to be trained on.
    let h = dir.path().join("h");
    let default_distilled = train(&fixture(), &h, 1, 5)
        .args([
            "--feature-cache",
            arg(&cache),
            "--distil",
            "0.5",
            "--weights",
            "f32",
        ])
        .assert()
        .success();
    let log = String::from_utf8_lossy(&default_distilled.get_output().stderr).into_owned();
    let teachers: Vec<&str> = log.lines().filter(|l| l.contains("teacher on")).collect();
    assert_eq!(teachers.len(), 1, "{log}");
    assert!(log.contains("3 unlabelled pairs from"), "{log}");
    let states: Vec<&str> = (log.lines())
        .filter(|l| l.starts_with("caption states"))
        .collect();
    assert_eq!(states.len(), 2, "{log}");
    assert!(states[1].ends_with("0 cached, 3 to compute"), "{log}");
    let h_metrics = read_json(&h.join("metrics.json"));
    assert_eq!(
        h_metrics["saved_model"]["confusion"],
        h_metrics["trained_model"]["confusion"]
    );
    // A test-list pair that is labelled too is not used as unlabelled; `--limit` takes the
    // same share of the test list (8 of 12 labelled: 2 of its 3 others).
    let both = dir.path().join("both");
    copy_fixture(&both);
    let list = both.join("test_without_label.txt");
    let text = std::fs::read_to_string(&list).unwrap();
    std::fs::write(&list, format!("{}\n4066,null\n", text.trim_end())).unwrap();
    let limited = train(&both, &dir.path().join("g"), 1, 5)
        .args(["--feature-cache", arg(&cache), "--small", "--limit", "8"])
        .assert()
        .success();
    let log = String::from_utf8_lossy(&limited.get_output().stderr).into_owned();
    assert!(log.contains("left out 1 of the pairs in"), "{log}");
    assert!(log.contains("2 unlabelled pairs from"), "{log}");
    assert_eq!(
        metrics["saved_model"]["confusion"],
        metrics["trained_model"]["confusion"]
    );
    for (folder, metrics) in [(&a, &first), (&b, &second), (&c, &heads), (&d, &tuned)] {
        // The written folder, reloaded and run end to end, agrees with the validation numbers
        // computed in training, in f32.
        assert_eq!(
            metrics["saved_model"]["confusion"],
            metrics["validation"]["confusion"]
        );
        let config = read_json(&folder.join("config.json"));
        assert_eq!(config["format"], 2);
        assert_eq!(config["image"]["encoder"]["kind"], "mobilenet-v2");
        assert_eq!(config["text"]["encoder"]["kind"], "minilm-l6");
        assert_eq!(config["text"]["encoder"]["num_hidden_layers"], 6);
        assert_eq!(config["image"]["preprocess"]["size"], 224);
    }
    // About a byte for each of MiniLM's 22.7 M and MobileNetV2's 2.2 M parameters in int8,
    // four in f32.
    let bytes = |folder: &Path| std::fs::metadata(folder.join("model.bpk")).unwrap().len();
    assert!(
        (24_000_000..32_000_000).contains(&bytes(&a)),
        "{} bytes",
        bytes(&a)
    );
    assert!(
        (95_000_000..110_000_000).contains(&bytes(&b)),
        "{} bytes",
        bytes(&b)
    );
    // Fine-tuning trained MiniLM's top layers and only them: against the heads-only folder
    // (MiniLM frozen), the top layer moved and the lowest did not.
    // The stored weights (a classifier on the CPU hands them to its own kernels).
    let stored = |folder: &Path| {
        let files = ModelFiles::read(folder).unwrap();
        SentimentModel::from_stored(&files.config, files.weights).unwrap()
    };
    let weights = |folder: &Path, name: &str| {
        let tensors = stored(folder).collect(None, None, false);
        let tensor = tensors.into_iter().find(|t| t.name == name).unwrap();
        tensor.to_bytes().unwrap().to_vec()
    };
    let layer = |n: usize| format!("text.encoder.Pretrained.encoder.layer.{n}.intermediate.weight");
    assert_ne!(weights(&b, &layer(5)), weights(&c, &layer(5)));
    assert_eq!(weights(&b, &layer(0)), weights(&c, &layer(0)));
    // Fine-tuning the picture encoder trained its top layers' convolutions only: batch norm
    // kept ImageNet's statistics and scales, the blocks below stayed as they were.
    let mobile = |part: &str| format!("image.encoder.Pretrained.{part}");
    for moved in ["head.conv.weight", "blocks.16.project.conv.weight"] {
        assert_ne!(
            weights(&c, &mobile(moved)),
            weights(&d, &mobile(moved)),
            "{moved}"
        );
    }
    // The small model's picture encoder is the frozen one, its caption encoder a BiLSTM.
    for frozen in ["head.conv.weight", "stem.conv.weight"] {
        assert_eq!(weights(&c, &mobile(frozen)), weights(&e, &mobile(frozen)));
    }
    let names: Vec<String> = (stored(&e).collect(None, None, false).into_iter())
        .map(|t| t.name)
        .collect();
    assert!(names.iter().any(|n| n.starts_with("text.encoder.Scratch.")));
    for kept in [
        "head.bn.running_mean",
        "head.bn.gamma",
        "blocks.16.project.bn.beta",
        "blocks.15.project.conv.weight",
    ] {
        assert_eq!(
            weights(&c, &mobile(kept)),
            weights(&d, &mobile(kept)),
            "{kept}"
        );
    }
    // And `predict` runs the folder end to end.
    predict(&a)
        .args(["--image", arg(&fixture().join("data/4066.jpg"))])
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
        .args(["--data", arg(&fixture())])
        .args(["--out", arg(&dir.path().join("m"))])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("nothing-here/minilm/config.json is missing")
                .and(predicate::str::contains("scripts/fetch-encoders.sh")),
        );
    bin("train")
        .args(["--encoders", arg(&dir.path().join("nothing-here"))])
        .args(["--data", arg(&fixture()), "--modality", "image"])
        .args(["--out", arg(&dir.path().join("m"))])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "nothing-here/mobilenet_v2.pth is missing",
        ));
    // all-mpnet-base-v2 is fetched apart: a teacher that needs it says so before any work.
    let partial = dir.path().join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    let mobilenet = support::encoders().dir().join("mobilenet_v2.pth");
    std::fs::copy(mobilenet, partial.join("mobilenet_v2.pth")).unwrap();
    bin("train")
        .args(["--encoders", arg(&partial), "--small", "--teacher", "mpnet"])
        .args(["--data", arg(&fixture())])
        .args(["--out", arg(&dir.path().join("m"))])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("partial/mpnet/model.safetensors is missing")
                .and(predicate::str::contains("fetch-encoders.sh --teacher")),
        );
}

#[test]
fn train_reports_a_missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder");
    train_small(&missing, &dir.path().join("m"), 1, 1)
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
    train_small(&data, &dir.path().join("m"), 2, 1)
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("train.txt:3").and(predicate::str::contains("5001;negative")),
        );
    let text = std::fs::read_to_string(&list)
        .unwrap()
        .replacen("5001;negative", "5001,sad", 1);
    std::fs::write(&list, text).unwrap();
    train_small(&data, &dir.path().join("m"), 2, 1)
        .assert()
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
    train_small(&data, &out, 1, 42).assert().success().stderr(
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
    let list = data.join("test_without_label.txt");
    let predict_list = || {
        let mut command = predict(&out);
        command.args(["--data", arg(&data), "--list", arg(&list), "--out", "-"]);
        command
    };
    predict_list()
        .assert()
        .success()
        .stdout(predicate::str::starts_with("guid,tag\n8,"))
        .stderr(predicate::str::contains("8.jpg").and(predicate::str::contains("caption alone")));

    // A JPEG cut short (its first third: no end-of-image marker) is no picture either: the
    // caption alone, said so; and in single mode, an error naming the file.
    let whole = std::fs::read(fixture().join("data/2626.jpg")).unwrap();
    std::fs::write(data.join("data/8.jpg"), &whole[..whole.len() / 3]).unwrap();
    predict_list().assert().success().stderr(
        predicate::str::contains("8.jpg")
            .and(predicate::str::contains("cut short"))
            .and(predicate::str::contains("the caption alone")),
    );
    predict(&out)
        .args(["--image", arg(&data.join("data/8.jpg")), "--text", "hello"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("8.jpg").and(predicate::str::contains("end-of-image")));
}

#[test]
fn register_upgrades_an_older_folder_and_lists_it_for_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    let folder = www.join("old");
    train_small(&fixture(), &folder, 1, 3).assert().success();
    assert!(
        !www.join("models.json").exists(),
        "no manifest, nothing listed"
    );
    // config.json as the first versions wrote it: flat, without a format.
    let config = read_json(&folder.join("config.json"));
    let (image, text) = (&config["image"], &config["text"]);
    let flat = serde_json::json!({
        "labels": config["labels"], "modality": "both",
        "image": {
            "size": image["preprocess"]["size"], "resize": image["preprocess"]["resize"],
            "mean": image["preprocess"]["mean"], "std": image["preprocess"]["std"],
            "channels": image["encoder"]["channels"], "max_side": image["preprocess"]["max_side"],
        },
        "text": {
            "max_len": text["preprocess"]["max_len"], "pad_id": text["preprocess"]["pad_id"],
            "max_bytes": text["preprocess"]["max_bytes"], "vocab_size": text["encoder"]["vocab_size"],
            "embed_dim": text["encoder"]["embed_dim"], "hidden": text["encoder"]["hidden"],
        },
        "fusion_hidden": config["fusion_hidden"], "dropout": config["dropout"],
    });
    std::fs::write(folder.join("config.json"), flat.to_string()).unwrap();
    predict(&folder)
        .args(["--text", "hello"])
        .assert()
        .success();

    std::fs::remove_file(folder.join("confusion.svg")).unwrap();
    bin("train")
        .args(["--register", arg(&folder)])
        .assert()
        .success();
    let confusion = std::fs::read_to_string(folder.join("confusion.svg")).unwrap();
    assert!(
        confusion.contains("Validation: accuracy"),
        "redrawn from metrics.json"
    );
    // The format-1 file had no emoji setting: such models were trained without spelling them.
    let mut upgraded = config.clone();
    upgraded["text"]["preprocess"]["emoji_names"] = false.into();
    assert_eq!(
        read_json(&folder.join("config.json")),
        upgraded,
        "upgraded to the current format"
    );
    let entry = |www: &Path| read_json(&www.join("models.json"))["models"][0].clone();
    let listed = entry(&www);
    assert_eq!(listed["id"], "old");
    let weights = std::fs::metadata(folder.join("model.bpk")).unwrap().len();
    assert_eq!(listed["files"]["model.bpk"], weights);
    let metrics = read_json(&folder.join("metrics.json"));
    assert_eq!(
        listed["validation"]["accuracy"],
        metrics["validation"]["accuracy"]
    );
    // Retraining a listed folder updates its entry (here, one made stale by hand).
    let stale = std::fs::read_to_string(www.join("models.json")).unwrap();
    let stale = stale.replace("\"pairs\": 3", "\"pairs\": 999");
    std::fs::write(www.join("models.json"), stale).unwrap();
    train_small(&fixture(), &folder, 2, 4).assert().success();
    let metrics = read_json(&folder.join("metrics.json"));
    assert_eq!(
        entry(&www)["validation"]["pairs"],
        metrics["validation_pairs"]
    );
    assert_eq!(
        entry(&www)["validation"]["macro_f1"],
        metrics["validation"]["macro_f1"]
    );
}

#[test]
fn help_describes_the_commands() {
    bin("train")
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("--modality").and(predicate::str::contains("Presets")));
    bin("predict")
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("--text-file"));
}

#[test]
fn a_killed_training_run_leaves_the_previous_folder_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    train_small(&fixture(), &out, 1, 3).assert().success();
    let old = std::fs::read(out.join("model.bpk")).unwrap();

    // Another seed, killed as soon as it writes its weights (or as it ends, if it is quicker).
    let mut run = std::process::Command::new(assert_cmd::cargo::cargo_bin("train"))
        .args(support::train_small_args(&fixture(), &out, 1, 4))
        .arg("--quiet")
        .spawn()
        .unwrap();
    let staged = dir.path().join(".model.partial").join("model.bpk");
    while !staged.exists() && run.try_wait().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let _ = run.kill();
    run.wait().unwrap();

    // Whatever the moment, the folder is one run's whole output: its weights and its metrics
    // come from the same run, and it loads.
    let seed = &read_json(&out.join("metrics.json"))["options"]["seed"];
    if std::fs::read(out.join("model.bpk")).unwrap() == old {
        assert_eq!(seed, 3, "the previous folder, whole");
    } else {
        assert_eq!(seed, 4, "the new folder, whole");
    }
    predict(&out).args(["--text", "hello"]).assert().success();

    // The next run clears what the killed one left and leaves nothing beside the folder.
    train_small(&fixture(), &out, 1, 4).assert().success();
    assert_eq!(read_json(&out.join("metrics.json"))["options"]["seed"], 4);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["model"]);
}

#[test]
fn predict_refuses_a_listed_folder_whose_files_do_not_match_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("models.json"), r#"{"models": []}"#).unwrap();
    let folder = www.join("m");
    train_small(&fixture(), &folder, 1, 3).assert().success();
    let listed = read_json(&www.join("models.json"))["models"][0].clone();
    assert_eq!(listed["sha256"].as_object().unwrap().len(), 3, "{listed}");
    predict(&folder)
        .args(["--text", "hello"])
        .assert()
        .success();

    // The same size, one byte changed: only the hash can tell.
    let weights = folder.join("model.bpk");
    let mut bytes = std::fs::read(&weights).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&weights, &bytes).unwrap();
    predict(&folder)
        .args(["--text", "hello"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "model.bpk: does not match its entry in",
        ));
    // Listed again, the folder is what the manifest says (the user's choice to keep it).
    bin("train")
        .args(["--register", arg(&folder)])
        .assert()
        .success();
    predict(&folder)
        .args(["--text", "hello"])
        .assert()
        .success();
}
