//! Property tests of the shared code that reads untrusted bytes: captions, pictures,
//! `config.json`, `models.json` and burnpack weights. Whatever the input, the answer is a value
//! or an error, never a panic. Each property runs `PROPTEST_CASES` cases (proptest's default,
//! 256, here and in CI; see docs/testing.md for a longer run). A failure proptest finds is written
//! to `tests/properties.proptest-regressions` and replayed first by every later run.

mod support;

use std::sync::OnceLock;

use burn::prelude::Device;
use mvsa_model::folder::{self, Manifest, ModelFiles};
use mvsa_model::preprocess::{ImagePreprocessor, decode_caption};
use mvsa_model::{Classifier, Pair};
use proptest::prelude::*;
use support::fixture;

fn www(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("www")
        .join(path)
}

/// The shipped small model, loaded once.
fn small() -> &'static Classifier {
    static SMALL: OnceLock<Classifier> = OnceLock::new();
    SMALL.get_or_init(|| Classifier::load(&www("model-small"), &Device::flex()).unwrap())
}

fn default_text() -> &'static Classifier {
    static MODEL: OnceLock<Classifier> = OnceLock::new();
    MODEL.get_or_init(|| Classifier::load(&www("model"), &Device::flex()).unwrap())
}

fn jpeg() -> &'static [u8] {
    static JPEG: OnceLock<Vec<u8>> = OnceLock::new();
    JPEG.get_or_init(|| std::fs::read(fixture().join("data/4066.jpg")).unwrap())
}

/// `bytes` with some bytes overwritten and the end cut off at `cut` (a share of the length).
fn damaged(bytes: &[u8], edits: &[(usize, u8)], cut: f64) -> Vec<u8> {
    let mut out = bytes[..((bytes.len() as f64 * cut) as usize).min(bytes.len())].to_vec();
    for &(at, value) in edits {
        if !out.is_empty() {
            let n = out.len();
            out[at % n] = value;
        }
    }
    out
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>()), 0..8)
}

proptest! {
    #[test]
    fn any_caption_bytes_decode_and_valid_utf8_stays_as_it_is(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = decode_caption(&bytes);
        prop_assert!(text.chars().count() <= bytes.len());
        if let Ok(utf8) = std::str::from_utf8(&bytes) {
            // As written, but for a byte-order mark and the surrounding whitespace.
            prop_assert_eq!(text, utf8.strip_prefix('\u{feff}').unwrap_or(utf8).trim());
        }
    }

    #[test]
    fn any_caption_tokenises_within_the_model_s_length_or_is_refused(caption in "\\PC{0,200}|[\\u{1F300}-\\u{1FAFF}\\u{200D}\\u{FE0F} a-z]{0,60}") {
        for model in [default_text(), small()] {
            let text = model.text_preprocessor().unwrap();
            let max_len = model.config().text.as_ref().unwrap().preprocess.max_len;
            if text.validate(&caption).is_ok() {
                let tokens = text.encode(&caption).unwrap();
                prop_assert!(!tokens.ids.is_empty() && tokens.ids.len() <= max_len);
            }
        }
    }

    #[test]
    fn damaged_pictures_are_errors_or_pictures(edits in edits(), cut in 0.0f64..1.0) {
        let images: &ImagePreprocessor = small().image_preprocessor().unwrap();
        let bytes = damaged(jpeg(), &edits, cut);
        if let Ok(pixels) = images.preprocess(&bytes) {
            let side = images.config().size;
            prop_assert_eq!(pixels.len(), 3 * side * side);
            prop_assert!(pixels.iter().all(|x| x.is_finite()));
        }
    }

    #[test]
    fn any_bytes_as_a_picture_are_an_error_or_a_picture(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let images = small().image_preprocessor().unwrap();
        let _ = images.preprocess(&bytes);
    }

    #[test]
    fn damaged_config_and_manifest_files_parse_or_are_refused(edits in edits(), cut in 0.0f64..=1.0) {
        let config = folder::config_json(small().config());
        let _ = folder::read_config(&damaged(config.as_bytes(), &edits, cut));
        let manifest = std::fs::read(www("models.json")).unwrap();
        let _ = serde_json::from_slice::<Manifest>(&damaged(&manifest, &edits, cut));
    }
}

proptest! {
    // Each case builds a model from 1.8 MB of weights: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(ProptestConfig::default().cases / 8))]
    #[test]
    fn damaged_weights_are_refused_or_still_classify(edits in edits(), cut in 0.0f64..=1.0) {
        let mut files = ModelFiles::read(&www("model-small")).unwrap();
        files.weights = damaged(&files.weights, &edits, cut);
        if let Ok(classifier) = Classifier::new(files, &Device::flex()) {
            let pair = Pair { image: Some(jpeg()), caption: Some("a sunny day") };
            if let Ok(out) = classifier.classify(&[pair]) {
                prop_assert_eq!(out.len(), 1);
            }
        }
    }
}
