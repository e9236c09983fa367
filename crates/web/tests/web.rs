//! In a real browser (`wasm-pack test --headless --chrome --release crates/web`): the wasm
//! build preprocesses like native and gives the golden probabilities of both shipped models (the
//! pretrained encoders of www/model, the small model of www/model-small) on the CPU backend and
//! on WebGPU (where the browser has an adapter), and turns bad input into errors.

use mvsa_model::folder::ModelFiles;
use mvsa_model::preprocess::{TextPreprocessor, decode_caption};
use mvsa_model::{Classifier, Pair};
use mvsa_web::WebClassifier;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A model folder's files and its golden values.
struct Model {
    config: &'static [u8],
    tokenizer: &'static [u8],
    weights: &'static [u8],
    golden: &'static str,
}

const SHIPPED: Model = Model {
    config: include_bytes!("../../../www/model/config.json"),
    tokenizer: include_bytes!("../../../www/model/tokenizer.json"),
    weights: include_bytes!("../../../www/model/model.bpk"),
    golden: include_str!("../../../tests/golden/shipped.json"),
};

const SMALL: Model = Model {
    config: include_bytes!("../../../www/model-small/config.json"),
    tokenizer: include_bytes!("../../../www/model-small/tokenizer.json"),
    weights: include_bytes!("../../../www/model-small/model.bpk"),
    golden: include_str!("../../../tests/golden/small.json"),
};

const TOLERANCE: f32 = 1e-4;

fn fixture(guid: &str) -> (&'static [u8], &'static [u8]) {
    match guid {
        "4066" => (
            include_bytes!("../../../tests/fixtures/mini/data/4066.jpg"),
            include_bytes!("../../../tests/fixtures/mini/data/4066.txt"),
        ),
        "4597" => (
            include_bytes!("../../../tests/fixtures/mini/data/4597.jpg"),
            include_bytes!("../../../tests/fixtures/mini/data/4597.txt"),
        ),
        "2626" => (
            include_bytes!("../../../tests/fixtures/mini/data/2626.jpg"),
            include_bytes!("../../../tests/fixtures/mini/data/2626.txt"),
        ),
        other => panic!("no fixture {other}"),
    }
}

#[derive(Deserialize)]
struct Golden {
    pairs: Vec<GoldenPair>,
}

#[derive(Deserialize)]
struct GoldenPair {
    guid: String,
    caption: String,
    pixel_sum: f64,
    pixels_head: Vec<f32>,
    tokens: Vec<u32>,
    label: String,
    fused: Vec<f32>,
    image: Vec<f32>,
    text: Vec<f32>,
}

#[derive(Deserialize)]
struct Answer {
    label: String,
    labels: Vec<String>,
    fused: Vec<f32>,
    image: Option<Vec<f32>>,
    text: Option<Vec<f32>>,
    backend: String,
    ms: f64,
}

#[derive(Deserialize)]
struct WarmUp {
    first_ms: f64,
    warm_ms: f64,
}

async fn warm_up(model: &WebClassifier) -> WarmUp {
    let value = model.warm_up().await.map_err(JsValue::from).unwrap();
    let warm: WarmUp = serde_wasm_bindgen::from_value(value).unwrap();
    assert!(warm.first_ms >= 0.0 && warm.warm_ms >= 0.0);
    warm
}

fn golden(model: &Model) -> Golden {
    serde_json::from_str(model.golden).unwrap()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= TOLERANCE)
}

async fn classifier(model: &Model, backend: &str) -> Result<WebClassifier, JsValue> {
    mvsa_web::start();
    WebClassifier::from_bytes(
        model.config.to_vec(),
        Some(model.tokenizer.to_vec()),
        model.weights.to_vec(),
        backend.into(),
    )
    .await
    .map_err(JsValue::from)
}

async fn answer(
    model: &WebClassifier,
    image: Option<&[u8]>,
    caption: Option<&str>,
) -> Result<Answer, JsValue> {
    let value = model
        .classify(image.map(<[u8]>::to_vec), caption.map(str::to_string))
        .await
        .map_err(JsValue::from)?;
    Ok(serde_wasm_bindgen::from_value(value).unwrap())
}

async fn check_golden(model: &WebClassifier, files: &Model) {
    for pair in golden(files).pairs {
        let (image, caption) = fixture(&pair.guid);
        let caption = decode_caption(caption);
        let a = answer(model, Some(image), Some(&caption)).await.unwrap();
        assert_eq!(a.label, pair.label, "guid {}", pair.guid);
        assert_eq!(a.labels, ["negative", "neutral", "positive"]);
        assert!(
            close(&a.fused, &pair.fused),
            "{}: {:?} vs {:?}",
            a.backend,
            a.fused,
            pair.fused
        );
        assert!(close(&a.image.unwrap(), &pair.image));
        assert!(close(&a.text.unwrap(), &pair.text));
        assert!(a.ms >= 0.0);
    }
}

#[wasm_bindgen_test]
fn preprocessing_matches_native() {
    for files in [&SHIPPED, &SMALL] {
        preprocessing_matches(files);
    }
}

fn preprocessing_matches(files: &Model) {
    let folder = ModelFiles::from_bytes(
        files.config,
        Some(files.tokenizer.to_vec()),
        files.weights.to_vec(),
    )
    .unwrap();
    let classifier = Classifier::new(folder, &burn::prelude::Device::flex()).unwrap();
    for pair in golden(files).pairs {
        let (image, caption) = fixture(&pair.guid);
        let caption = decode_caption(caption);
        assert_eq!(caption, pair.caption);
        let input = Pair {
            image: Some(image),
            caption: Some(&caption),
        };
        let prepared = classifier.prepare(input).unwrap();
        let pixels = prepared.image.unwrap();
        let sum: f64 = pixels.iter().map(|&v| v as f64).sum();
        assert!(
            (sum - pair.pixel_sum).abs() <= 1e-5 * pair.pixel_sum.abs().max(1.0),
            "{sum} vs {}",
            pair.pixel_sum
        );
        assert!(close(&pixels[..16], &pair.pixels_head));
        assert_eq!(prepared.tokens.unwrap().ids, pair.tokens);
    }
}

/// Captions as people wrote them, decoded and tokenised in the browser as natively: GBK bytes
/// (the data set's non-UTF-8 captions) and emoji spelled out, so "😭💔" and "👍" differ.
#[wasm_bindgen_test]
fn gbk_captions_and_emoji_read_as_natively() {
    assert_eq!(
        decode_caption(b"\xa1\xb0@Chris_Smoove: I pulled this beast!"),
        "“@Chris_Smoove: I pulled this beast!"
    );
    assert_eq!(decode_caption(b"diesel 4 x\xa1\xad \r\n"), "diesel 4 x…");
    let mut branch = mvsa_model::folder::read_config(SHIPPED.config)
        .unwrap()
        .text
        .unwrap();
    branch.preprocess.emoji_names = true;
    let text = TextPreprocessor::from_json(SHIPPED.tokenizer, branch).unwrap();
    let unk = text.tokenizer().token_to_id("[UNK]").unwrap();
    let sad = text.encode("😭💔").unwrap().ids;
    let good = text.encode("👍").unwrap().ids;
    assert_ne!(sad, good);
    assert!(
        !sad.contains(&unk) && !good.contains(&unk),
        "{sad:?} {good:?}"
    );
    assert_eq!(text.normalise("👍"), " thumbs up ");
}

#[wasm_bindgen_test]
async fn cpu_backend_matches_native() {
    for files in [&SHIPPED, &SMALL] {
        let model = classifier(files, "cpu").await.unwrap();
        assert_eq!(model.backend(), "cpu");
        check_golden(&model, files).await;
    }
}

#[wasm_bindgen_test]
async fn webgpu_backend_matches_native_where_available() {
    match classifier(&SHIPPED, "webgpu").await {
        Ok(model) => {
            assert_eq!(model.backend(), "webgpu");
            // Warmed up over every caption-length bucket, then the golden pairs padded to
            // their buckets: masked padding gives the same probabilities.
            let warm = warm_up(&model).await;
            console_log!(
                "WebGPU warm-up {:.0} ms, then a warm run {:.0} ms",
                warm.first_ms,
                warm.warm_ms
            );
            check_golden(&model, &SHIPPED).await;
            let small = classifier(&SMALL, "webgpu").await.unwrap();
            check_golden(&small, &SMALL).await;
            console_log!("WebGPU: both models classified and matched the native golden values");
        }
        Err(e) => {
            let why = String::from(js_sys::Error::from(e).message());
            // The CPU build says it has no WebGPU; the WebGPU build, that the browser has none.
            let expected = match mvsa_web::has_webgpu() {
                true => "no WebGPU adapter",
                false => "CPU only",
            };
            assert!(why.contains(expected), "{why}");
            console_log!("WebGPU test NOT RUN: {why}");
        }
    }
}

#[wasm_bindgen_test]
async fn a_folder_of_files_warms_up_classifies_and_profiles() {
    mvsa_web::start();
    let files = js_sys::Object::new();
    for (name, bytes) in [
        ("config.json", SMALL.config),
        ("tokenizer.json", SMALL.tokenizer),
        ("model.bpk", SMALL.weights),
    ] {
        let array = js_sys::Uint8Array::from(bytes);
        js_sys::Reflect::set(&files, &name.into(), &array).unwrap();
    }
    let model = WebClassifier::create(files.clone(), "cpu".into())
        .await
        .map_err(JsValue::from)
        .unwrap();
    warm_up(&model).await;
    check_golden(&model, &SMALL).await;
    let (image, caption) = fixture("4066");
    let caption = decode_caption(caption);
    let profile = model
        .profile(Some(image.to_vec()), Some(caption))
        .await
        .map_err(JsValue::from)
        .unwrap();
    let profile: std::collections::BTreeMap<String, f64> =
        serde_wasm_bindgen::from_value(profile).unwrap();
    let stages: Vec<&str> = profile.keys().map(String::as_str).collect();
    assert_eq!(
        stages,
        ["heads", "image_encoder", "preprocess", "text_encoder"]
    );
    assert!(profile.values().all(|ms| *ms >= 0.0));
    // A folder without its weights is an error that names the file.
    js_sys::Reflect::delete_property(&files, &"model.bpk".into()).unwrap();
    let err = WebClassifier::create(files, "cpu".into())
        .await
        .err()
        .unwrap();
    let why = String::from(js_sys::Error::from(JsValue::from(err)).message());
    assert!(why.contains("model.bpk"), "{why}");
}

#[wasm_bindgen_test]
async fn bad_input_is_an_error_and_the_model_keeps_working() {
    let model = classifier(&SHIPPED, "cpu").await.unwrap();
    let (image, caption) = fixture("4066");
    let caption = decode_caption(caption);
    let mut truncated = image.to_vec();
    truncated.truncate(image.len() / 3);
    let errors = [
        answer(&model, Some(b"GIF89a not really"), Some(&caption))
            .await
            .err(),
        answer(&model, Some(&truncated), Some(&caption)).await.err(),
        answer(&model, Some(image), Some("   ")).await.err(),
        answer(&model, Some(image), Some(&"x".repeat(100_000)))
            .await
            .err(),
        answer(&model, None, None).await.err(),
        answer(
            &model,
            Some(include_bytes!(
                "../../../tests/fixtures/huge-10000x10000.png"
            )),
            Some(&caption),
        )
        .await
        .err(),
    ];
    for (i, e) in errors.iter().enumerate() {
        assert!(e.is_some(), "bad input {i} was accepted");
    }
    // A broken model folder is an error too.
    let broken = WebClassifier::from_bytes(
        SHIPPED.config.to_vec(),
        Some(SHIPPED.tokenizer.to_vec()),
        b"junk".to_vec(),
        "cpu".into(),
    )
    .await;
    assert!(broken.is_err());
    // So are the small model's weights under the big model's config.
    let mismatched = WebClassifier::from_bytes(
        SHIPPED.config.to_vec(),
        Some(SHIPPED.tokenizer.to_vec()),
        SMALL.weights.to_vec(),
        "cpu".into(),
    )
    .await;
    assert!(mismatched.is_err());
    // And the next classification still works.
    let a = answer(&model, Some(image), Some(&caption)).await.unwrap();
    assert!((a.fused.iter().sum::<f32>() - 1.0).abs() < 1e-4);
}

/// The page's checks and explanations in wasm: `inspect` sizes a picture and refuses a
/// cut-short one, a folder's pair is read from its files' bytes as the trainer reads them (a
/// picture that cannot be read leaves the caption alone, with a note), and an explanation's
/// whole-pair probabilities are `classify`'s, with a cell per square of the grid.
#[wasm_bindgen_test]
async fn inspect_pairs_and_explain_as_the_page_uses_them() {
    let model = classifier(&SMALL, "cpu").await.unwrap();
    let (image, raw) = fixture("4597");
    #[derive(Deserialize)]
    struct Size {
        width: u32,
        height: u32,
    }
    let size: Size = serde_wasm_bindgen::from_value(model.inspect(image).unwrap()).unwrap();
    let decoded = image::load_from_memory(image).unwrap();
    assert_eq!(
        (size.width, size.height),
        (decoded.width(), decoded.height())
    );
    // 4066's first third (the JPEG decoder reads some cut-short files to the end in grey).
    let cut = &fixture("4066").0[..fixture("4066").0.len() / 3];
    let why = String::from(
        js_sys::Error::from(JsValue::from(model.inspect(cut).err().unwrap())).message(),
    );
    assert!(why.contains("end-of-image"), "{why}");

    let caption = decode_caption(raw);
    let answer = answer(&model, Some(image), Some(&caption)).await.unwrap();
    let pair = |image: &[u8]| model.classify_pair(Some(image.to_vec()), Some(raw.to_vec()));
    let whole: serde_json::Value =
        serde_wasm_bindgen::from_value(pair(image).await.unwrap()).unwrap();
    assert_eq!(whole["caption"], caption.as_str());
    assert_eq!(whole["notes"].as_array().unwrap().len(), 0);
    let fused: Vec<f32> = serde_json::from_value(whole["fused"].clone()).unwrap();
    assert!(close(&fused, &answer.fused));
    let alone: serde_json::Value =
        serde_wasm_bindgen::from_value(pair(cut).await.unwrap()).unwrap();
    assert_eq!(alone["image"], serde_json::Value::Null);
    assert_eq!(alone["notes"][0]["kind"], "picture-unreadable");
    let explained = model
        .explain(Some(image.to_vec()), Some(caption.clone()), 4)
        .await
        .map_err(JsValue::from)
        .unwrap();
    let explained: serde_json::Value = serde_wasm_bindgen::from_value(explained).unwrap();
    let fused: Vec<f32> = serde_json::from_value(explained["fused"].clone()).unwrap();
    assert!(
        close(&fused, &answer.fused),
        "{fused:?} vs {:?}",
        answer.fused
    );
    assert_eq!(explained["picture"]["cells"].as_array().unwrap().len(), 16);
    let words = explained["words"].as_array().unwrap();
    assert_eq!(words.len(), caption.split_whitespace().count());
}
