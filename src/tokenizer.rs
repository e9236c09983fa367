//! The small model's caption tokenizer, learned from the training captions (the pretrained
//! encoders bring their own): tweet-aware normalisation, then WordPiece. Training only; what it
//! learns is saved as the model folder's `tokenizer.json`, which native and wasm load alike.

use anyhow::Result;
use tokenizers::Tokenizer;

/// Special tokens, in id order: padding, unknown, and the placeholders URLs and @mentions
/// become.
pub const PAD: &str = "[PAD]";
pub const UNK: &str = "[UNK]";
pub const URL: &str = "xxurl";
pub const USER: &str = "xxuser";

/// An untrained tweet tokenizer: NFKC → URLs and @mentions to placeholders → lower-case; split on
/// whitespace, punctuation (so `#hashtag` → `#`, `hashtag`) and around each emoji; WordPiece.
pub fn tweet_tokenizer() -> Tokenizer {
    use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::normalizers::{Lowercase, NFKC, Replace, Sequence as Normalizers};
    use tokenizers::pre_tokenizers::{
        punctuation::Punctuation, sequence::Sequence as PreTokenizers, split::Split,
        split::SplitPattern, whitespace::WhitespaceSplit,
    };
    use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

    let replace = |pattern: &str, with: &str| -> NormalizerWrapper {
        Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(pattern.into()),
            format!(" {with} "),
        )
        .expect("valid regex")
        .into()
    };
    let normalizer = Normalizers::new(vec![
        NFKC.into(),
        replace(r"(?i)\b(?:https?://|www\.)\S*", URL),
        replace(r"@\w+", USER),
        Lowercase.into(),
    ]);
    let pre_tokenizer = PreTokenizers::new(vec![
        PreTokenizerWrapper::WhitespaceSplit(WhitespaceSplit),
        Punctuation::new(SplitDelimiterBehavior::Isolated).into(),
        Split::new(
            SplitPattern::Regex(r"\p{Extended_Pictographic}".into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .expect("valid regex")
        .into(),
    ]);
    let model = WordPiece::builder()
        .unk_token(UNK.into())
        .build()
        .expect("valid wordpiece");
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(normalizer))
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_decoder(Some(WordPieceDecoder::default()));
    tokenizer
}

/// Learn a WordPiece vocabulary of at most `vocab_size` tokens from training captions.
///
/// The `tokenizers` trainer numbers the word-continuation pieces (`##e`, ...) in hash-map order,
/// which differs from run to run and changes how ties between equally frequent merges are broken.
/// Registering every continuation piece up front, in character order, makes the vocabulary a
/// function of the captions alone; the finished tokenizer keeps only the real special tokens.
pub fn train_tokenizer<'a>(
    captions: impl Iterator<Item = &'a str> + Send + Clone,
    vocab_size: usize,
) -> Result<Tokenizer> {
    use std::collections::BTreeSet;
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::wordpiece::WordPieceTrainer;
    use tokenizers::{AddedToken, NormalizedString, Normalizer};

    let specials = || -> Vec<AddedToken> {
        [PAD, UNK, URL, USER]
            .iter()
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect()
    };
    let mut tokenizer = tweet_tokenizer();
    let normalizer = tokenizer
        .get_normalizer()
        .expect("tweet tokenizer normalises")
        .clone();
    let mut alphabet = BTreeSet::new();
    for caption in captions.clone() {
        let mut normalized = NormalizedString::from(caption);
        normalizer
            .normalize(&mut normalized)
            .map_err(anyhow::Error::msg)?;
        alphabet.extend(normalized.get().chars().filter(|c| !c.is_whitespace()));
    }
    let mut pieces = specials();
    pieces.extend(
        alphabet
            .iter()
            .map(|c| AddedToken::from(format!("##{c}"), true)),
    );
    let mut trainer: TrainerWrapper = WordPieceTrainer::builder()
        .vocab_size(vocab_size.max(pieces.len() + alphabet.len()))
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(pieces)
        .build()
        .into();
    tokenizer
        .train(&mut trainer, captions)
        .map_err(anyhow::Error::msg)?;

    // Drop the continuation pieces from the added (special) tokens; they stay in the vocabulary.
    let mut json: serde_json::Value =
        serde_json::from_str(&tokenizer.to_string(false).map_err(anyhow::Error::msg)?)
            .map_err(anyhow::Error::msg)?;
    if let Some(added) = json.get_mut("added_tokens").and_then(|a| a.as_array_mut()) {
        added.retain(|t| {
            t.get("content")
                .and_then(|c| c.as_str())
                .is_some_and(|c| [PAD, UNK, URL, USER].contains(&c))
        });
    }
    Tokenizer::from_bytes(json.to_string()).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvsa_model::Error;
    use mvsa_model::config::TextBranchConfig;
    use mvsa_model::preprocess::{TextPreprocessor, normalise};

    #[test]
    fn tokenizer_round_trip_maps_tweet_features() {
        let captions = [
            "I love #NYC http://t.co/abc @bob 😀",
            "love love love the city",
            "RT @alice: so sad today http://t.co/x",
            "happy happy day #love 😀😀",
            "nyc is #nyc",
        ];
        // Learned from the captions as the tokenizer will see them: emoji spelled out.
        let settings = TextBranchConfig::scratch(200, 12).preprocess;
        let seen: Vec<String> = captions
            .iter()
            .map(|c| normalise(&settings, c).into_owned())
            .collect();
        let tokenizer = train_tokenizer(seen.iter().map(String::as_str), 200).unwrap();
        let vocab = tokenizer.get_vocab_size(true);
        let config = TextBranchConfig::scratch(vocab, 12);
        let text = TextPreprocessor::new(tokenizer, config).unwrap();
        assert_eq!(text.tokenizer().token_to_id(PAD), Some(0));

        let tokens = text
            .encode("I LOVE #nyc https://t.co/Z9 @Someone 😀")
            .unwrap();
        let pieces: Vec<String> = tokens
            .ids
            .iter()
            .map(|&id| text.tokenizer().id_to_token(id).unwrap())
            .collect();
        assert_eq!(tokens.len(), 8, "{pieces:?}");
        // A batch pads to the LSTM's 12 steps with [PAD] (id 0), masked out.
        let rows = text.rows(&[&tokens]);
        assert_eq!(rows.shape, [1, 12]);
        assert!(rows.ids[8..].iter().all(|&id| id == 0));
        assert_eq!(rows.mask.iter().sum::<f32>(), 8.0);
        let decoded = text.decode(&tokens.ids).unwrap();
        assert_eq!(decoded, "i love # nyc xxurl xxuser grinning face");

        // Truncation at max_len, and an empty caption is all padding.
        let long = "love ".repeat(40);
        assert_eq!(text.encode(&long).unwrap().len(), 12);
        assert!(text.encode("").unwrap().is_empty());
        assert!(matches!(text.validate("  "), Err(Error::EmptyCaption)));
        assert!(matches!(
            text.validate(&"x".repeat(100_000)),
            Err(Error::CaptionTooLong { .. })
        ));

        // The saved tokenizer.json loads back to the same encoder.
        let json = text.tokenizer().to_string(false).unwrap();
        let config = TextBranchConfig::scratch(vocab, 12);
        let again = TextPreprocessor::from_json(json.as_bytes(), config).unwrap();
        assert_eq!(
            again.encode("I love #NYC").unwrap(),
            text.encode("I love #NYC").unwrap()
        );
    }

    #[test]
    fn tokenizer_with_wrong_vocab_size_is_rejected() {
        let tokenizer = train_tokenizer(["a b c"].into_iter(), 50).unwrap();
        let config = TextBranchConfig::scratch(9999, 40);
        assert!(matches!(
            TextPreprocessor::new(tokenizer, config),
            Err(Error::Tokenizer(_))
        ));
    }
}
