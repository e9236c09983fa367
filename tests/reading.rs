//! What an answer says it used: a cut-short JPEG is refused (and a folder's pair falls back to
//! its caption, with a note), a caption mostly in another script is not read where there is a
//! picture and said unreliable where there is none, and a caption longer than the model reads
//! is said so, its explanation tinting every word read and no word after.

mod support;

use burn::prelude::Device;
use mvsa_model::preprocess::{MIN_LATIN_SHARE, latin_share, split_words};
use mvsa_model::{Classifier, NoteKind, Pair};

fn shipped(folder: &str) -> Classifier {
    Classifier::load(&support::root().join(folder), &Device::flex()).unwrap()
}

const CHINESE: &str = "太糟糕了，我的猫死了，我很伤心。"; // "terrible, my cat died, I'm very sad"

#[test]
fn every_fixture_jpeg_cut_short_is_refused_and_a_whole_one_with_a_tail_is_not() {
    let classifier = shipped("www/model-small");
    let pre = classifier.image_preprocessor().unwrap();
    for (image, _) in support::pairs() {
        for keep in [image.len() / 3, image.len() * 2 / 3, image.len() - 2] {
            let e = pre
                .decode(&image[..keep])
                .expect_err("a cut-short JPEG was read");
            assert!(e.to_string().contains("end-of-image"), "{e}");
            assert!(pre.dimensions(&image[..keep]).is_err());
        }
        // Bytes after the end-of-image marker (a motion photo's video, say) are no damage,
        // markers among them included.
        let mut tailed = image.clone();
        tailed.extend_from_slice(&[
            0xFF, 0xDA, 0, 8, 1, 2, 3, 4, 5, 6, 0xFF, 0xD9, 0xFF, 0xDA, 9,
        ]);
        assert!(pre.decode(&tailed).is_ok());
    }
}

#[test]
fn a_folder_pair_with_a_cut_short_picture_is_read_from_its_caption_with_a_note() {
    let classifier = shipped("www/model");
    let (image, caption) = support::pair("2626");
    let cut = &image[..image.len() / 3];
    let pair = Pair {
        image: Some(cut),
        caption: Some(&caption),
    };
    assert!(classifier.prepare(pair).is_err());
    let prepared = classifier.prepare_any(pair).unwrap();
    assert!(prepared.image.is_none() && prepared.tokens.is_some());
    assert_eq!(prepared.notes[0].kind, NoteKind::PictureUnreadable);
    assert!(prepared.notes[0].text.contains("end-of-image"));
    let answer = classifier.run(&[prepared]).unwrap().remove(0);
    assert!(answer.scores.image.is_none());
    assert_eq!(answer.notes.len(), 1);
    // A caption's own error is the pair's, not the picture's.
    let long = "x".repeat(5000);
    let too_long = Pair {
        image: Some(&image),
        caption: Some(&long),
    };
    let e = classifier.prepare_any(too_long).unwrap_err();
    assert!(e.to_string().contains("caption is 5000 bytes"), "{e}");
    // An empty caption leaves the picture alone, said so too.
    let empty = Pair {
        image: Some(&image),
        caption: Some("  "),
    };
    let prepared = classifier.prepare_any(empty).unwrap();
    assert!(prepared.tokens.is_none() && prepared.image.is_some());
    assert_eq!(prepared.notes[0].kind, NoteKind::CaptionEmpty);
}

#[test]
fn latin_share_counts_letters_only() {
    assert_eq!(latin_share("so sad 😭 !!! 42"), Some(1.0));
    assert_eq!(latin_share("😭 !!! 42"), None);
    assert_eq!(latin_share(CHINESE), Some(0.0));
    assert_eq!(latin_share("RT @abc: Это ужасно"), Some(2.0 / 11.0));
    // Links and @names are Latin in any language: not counted.
    assert_eq!(
        latin_share("友達にも教えてあげよう！ http://t.co/mYLv1lCda0 @friend"),
        Some(0.0)
    );
    assert_eq!(latin_share("@friend http://t.co/x"), None);
    assert!(latin_share("Ｚｉｐｐｙ café").unwrap() == 1.0);
    assert!(latin_share("C'est terrible, mon chat est mort").unwrap() >= MIN_LATIN_SHARE);
}

#[test]
fn a_caption_in_another_script_is_not_read_beside_a_picture_and_unreliable_alone() {
    for folder in ["www/model", "www/model-small"] {
        let classifier = shipped(folder);
        let (image, _) = support::pair("2626");
        let with = Pair {
            image: Some(&image),
            caption: Some(CHINESE),
        };
        let answer = classifier.classify(&[with]).unwrap().remove(0);
        let picture = Pair {
            image: Some(&image),
            caption: None,
        };
        let alone = classifier.classify(&[picture]).unwrap().remove(0);
        assert!(
            answer.scores.text.is_none(),
            "{folder}: the caption was read"
        );
        assert_eq!(answer.scores.fused, alone.scores.fused, "{folder}");
        assert_eq!(answer.notes[0].kind, NoteKind::CaptionForeign);
        assert!(answer.notes[0].text.contains("picture alone"));
        let caption = Pair {
            image: None,
            caption: Some(CHINESE),
        };
        let answer = classifier.classify(&[caption]).unwrap().remove(0);
        assert!(answer.scores.text.is_some());
        assert_eq!(answer.notes[0].kind, NoteKind::CaptionForeign);
        assert!(answer.notes[0].text.contains("unreliable"), "{folder}");
        // English, and Latin-script French, are read as before: no note.
        for read in ["so sad, my cat died", "C'est terrible, mon chat est mort"] {
            let pair = Pair {
                image: Some(&image),
                caption: Some(read),
            };
            assert!(classifier.classify(&[pair]).unwrap()[0].notes.is_empty());
        }
    }
}

#[test]
fn a_long_caption_says_where_the_model_stopped_and_every_word_read_is_explained() {
    let classifier = shipped("www/model");
    let pre = classifier.text_preprocessor().unwrap();
    let filler = "the weather today is quite ordinary and the bus came on time ".repeat(15);
    let caption = format!("{filler}but then my dog died and I am heartbroken and furious");
    let words = split_words(&caption);
    let read = pre.words_read(&words).unwrap();
    assert!(read > 64 && read < words.len(), "{read} of {}", words.len());
    let joined = |k: usize| {
        words[..k]
            .iter()
            .map(|(b, w)| format!("{b}{w}"))
            .collect::<String>()
    };
    assert!(pre.fits(&joined(read)).unwrap());
    assert!(!pre.fits(&joined(read + 1)).unwrap());

    let (image, _) = support::pair("2626");
    let pair = Pair {
        image: Some(&image),
        caption: Some(&caption),
    };
    let answer = classifier.classify(&[pair]).unwrap().remove(0);
    let note = &answer.notes[0];
    assert_eq!(note.kind, NoteKind::CaptionCut);
    assert!(
        note.text
            .contains(&format!("first {read} of its {} words", words.len())),
        "{}",
        note.text
    );
    let explanation = classifier.explain(pair, 2).unwrap();
    assert_eq!(explanation.words.len(), words.len());
    for (i, w) in explanation.words.iter().enumerate() {
        assert_eq!(w.read, i < read, "word {i}");
        assert_eq!(w.effect.is_some(), i < read, "word {i}");
    }
    // A short caption: every word read, no note.
    let short = Pair {
        image: Some(&image),
        caption: Some("my dog died"),
    };
    assert!(classifier.classify(&[short]).unwrap()[0].notes.is_empty());
}
