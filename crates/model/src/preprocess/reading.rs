//! How much of a caption the model can read: whether its letters are in the script the model
//! was trained on, and where a caption longer than `max_len` tokens stops being read. The
//! classifier turns both into notes on the answer; explanations tint only the words read.

use unicode_script::{Script, UnicodeScript};

use super::TextPreprocessor;
use crate::error::Result;

/// Under this share of Latin letters the model cannot read a caption. MiniLM's vocabulary is
/// English: Cyrillic and Arabic fall apart into single letters, most Han and kana into
/// `[UNK]`. Of the 3,400 training captions, 64 are under half Latin, and 52 of those are
/// labelled positive (81 %, against 60 % over all): what the model learned from such captions
/// is mostly "another script, so positive", not what they say (docs/experiments.md).
pub const MIN_LATIN_SHARE: f32 = 0.5;

/// What the model reads of one caption.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// The share of the caption's letters that are Latin (emoji, digits and punctuation are no
    /// letters, links and @names are not counted); `None` for a caption without letters.
    pub latin_share: Option<f32>,
    /// The caption's whitespace-separated words ([`split_words`]).
    pub words: usize,
    /// How many of them, from the first, fit in `max_len` tokens: the model reads no more.
    pub read: usize,
}

impl Reading {
    /// Mostly in a script the model was not trained to read.
    pub fn foreign(&self) -> bool {
        self.latin_share.is_some_and(|s| s < MIN_LATIN_SHARE)
    }

    /// Longer than the model reads.
    pub fn cut(&self) -> bool {
        self.read < self.words
    }
}

/// The share of `text`'s letters that are in the Latin script, or `None` without letters.
/// Links and @names are left out: they are Latin whatever the caption's language.
pub fn latin_share(text: &str) -> Option<f32> {
    let link_or_name = |w: &&str| {
        w.starts_with("http://")
            || w.starts_with("https://")
            || w.starts_with("www.")
            || w.starts_with('@')
    };
    let words = text.split_whitespace().filter(|w| !link_or_name(w));
    let (mut letters, mut latin) = (0usize, 0usize);
    for c in words.flat_map(str::chars).filter(|c| c.is_alphabetic()) {
        letters += 1;
        latin += usize::from(c.script() == Script::Latin);
    }
    (letters > 0).then(|| latin as f32 / letters as f32)
}

/// `caption` as (whitespace before, word) pieces, so that `before + word` over all pieces
/// gives the caption back; trailing whitespace is dropped.
pub fn split_words(caption: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut rest = caption;
    loop {
        let start = rest.len() - rest.trim_start().len();
        let (before, tail) = rest.split_at(start);
        if tail.is_empty() {
            return words;
        }
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        words.push((before.to_owned(), tail[..end].to_owned()));
        rest = &tail[end..];
    }
}

/// The first `k` of `words`, joined back into text.
fn prefix(words: &[(String, String)], k: usize) -> String {
    words[..k].iter().map(|(b, w)| format!("{b}{w}")).collect()
}

impl TextPreprocessor {
    /// The most tokens the model reads of a caption.
    pub fn max_len(&self) -> usize {
        self.config.preprocess.max_len
    }

    /// What the model reads of `caption`.
    pub fn reading(&self, caption: &str) -> Result<Reading> {
        let words = split_words(caption);
        Ok(Reading {
            latin_share: latin_share(caption),
            words: words.len(),
            read: self.words_read(&words)?,
        })
    }

    /// Whether all of `caption` fits in `max_len` tokens (special tokens included).
    pub fn fits(&self, caption: &str) -> Result<bool> {
        let caption = self.normalise(caption);
        let encoding = self
            .tokenizer
            .encode(caption.as_ref(), self.config.pretrained())
            .map_err(|e| crate::Error::Tokenizer(e.to_string()))?;
        let max_len = self.config.preprocess.max_len;
        Ok(encoding.get_overflowing().is_empty() && encoding.get_ids().len() <= max_len)
    }

    /// How many of `words`, from the first, the model reads in full: all of them, or for a
    /// caption over `max_len` tokens the longest run that fits (a binary search: a dozen
    /// tokenisations of a caption of at most `max_bytes`).
    pub fn words_read(&self, words: &[(String, String)]) -> Result<usize> {
        if self.fits(&prefix(words, words.len()))? {
            return Ok(words.len());
        }
        // The first `low` words fit; the first `high` do not.
        let (mut low, mut high) = (0, words.len());
        while high - low > 1 {
            let mid = (low + high) / 2;
            if self.fits(&prefix(words, mid))? {
                low = mid;
            } else {
                high = mid;
            }
        }
        Ok(low)
    }
}
