//! Occlusion explanations on the shipped models: each effect is what hiding that part really
//! changes, the whole pair's probabilities are the classifier's, and the words give the
//! caption back.

mod support;

use burn::prelude::Device;
use mvsa_model::{Classifier, Pair};

fn shipped(folder: &str) -> Classifier {
    Classifier::load(&support::root().join(folder), &Device::flex()).unwrap()
}

fn fused(classifier: &Classifier, image: Option<&[u8]>, caption: Option<&str>) -> Vec<f32> {
    let pair = Pair { image, caption };
    classifier.classify(&[pair]).unwrap().remove(0).scores.fused
}

fn close(a: &[f32], b: &[f32], tolerance: f32) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tolerance)
}

#[test]
fn word_effects_are_what_hiding_each_word_changes() {
    for folder in ["www/model", "www/model-small"] {
        let classifier = shipped(folder);
        let (image, caption) = support::pair("2626");
        let pair = Pair {
            image: Some(&image),
            caption: Some(&caption),
        };
        let explanation = classifier.explain(pair, 4).unwrap();
        let whole = fused(&classifier, Some(&image), Some(&caption));
        assert!(close(&explanation.fused, &whole, 1e-5), "{folder}");
        let words = &explanation.words;
        let rebuilt: String = words
            .iter()
            .map(|w| format!("{}{}", w.before, w.word))
            .collect();
        assert_eq!(rebuilt, caption.trim_end());
        // The word that pushed hardest toward the answer, hidden by hand.
        let label = mvsa_model::metrics::argmax(&whole);
        let (top, effect) = (words.iter().enumerate())
            .map(|(i, w)| (i, w.effect.clone().unwrap()))
            .max_by(|a, b| a.1[label].total_cmp(&b.1[label]))
            .unwrap();
        assert!(
            effect[label] > 0.0,
            "{folder}: no word pushed toward the answer"
        );
        let without: String = (words.iter().enumerate())
            .map(|(i, w)| {
                if i == top {
                    w.before.clone()
                } else {
                    format!("{}{}", w.before, w.word)
                }
            })
            .collect();
        let hidden = fused(&classifier, Some(&image), Some(&without));
        let expected: Vec<f32> = whole.iter().zip(&effect).map(|(w, e)| w - e).collect();
        assert!(
            close(&hidden, &expected, 1e-4),
            "{folder}: {hidden:?} vs {expected:?}"
        );
        assert!(hidden[label] < whole[label]);
    }
}

#[test]
fn picture_cells_cover_the_centre_square_and_move_the_answer() {
    let classifier = shipped("www/model");
    let (image, _) = support::pair("4066");
    let pair = Pair {
        image: Some(&image),
        caption: None,
    };
    let explanation = classifier.explain(pair, 4).unwrap();
    assert!(explanation.words.is_empty());
    let whole = fused(&classifier, Some(&image), None);
    assert!(close(&explanation.fused, &whole, 1e-5));
    let picture = explanation.picture.unwrap();
    assert_eq!(
        (picture.rows, picture.cols, picture.cells.len()),
        (4, 4, 16)
    );
    let decoded = image::load_from_memory(&image).unwrap();
    assert_eq!(
        (picture.width, picture.height),
        (decoded.width(), decoded.height())
    );
    // The square of the shorter side, 224/256 of it, in the middle.
    let [x, y, w, h] = picture.crop;
    let short = picture.width.min(picture.height) as f32;
    assert!(
        (w * picture.width as f32 - short * 0.875).abs() < 0.5,
        "{:?}",
        picture.crop
    );
    assert!((h * picture.height as f32 - short * 0.875).abs() < 0.5);
    assert!((x * 2.0 + w - 1.0).abs() < 1e-6 && (y * 2.0 + h - 1.0).abs() < 1e-6);
    // Hiding some cell matters, and effects over labels sum to zero (probabilities do).
    assert!(
        picture
            .cells
            .iter()
            .any(|c| c.iter().any(|e| e.abs() > 1e-3))
    );
    for cell in &picture.cells {
        assert!(cell.iter().sum::<f32>().abs() < 1e-4, "{cell:?}");
    }
}

#[test]
fn a_one_word_caption_can_be_hidden_whole() {
    let classifier = shipped("www/model");
    let pair = Pair {
        image: None,
        caption: Some("  wonderful "),
    };
    let explanation = classifier.explain(pair, 4).unwrap();
    assert!(explanation.picture.is_none());
    assert_eq!(explanation.words.len(), 1);
    assert_eq!(explanation.words[0].before, "  ");
    let effect = explanation.words[0].effect.as_ref().unwrap();
    assert!(effect.iter().all(|e| e.is_finite()), "{effect:?}");
}
