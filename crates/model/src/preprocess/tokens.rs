//! Text → token ids with the model's `tokenizer.json` and the config's length settings, and
//! batches of them as padded rows.

use std::borrow::Cow;

use tokenizers::Tokenizer;

use super::caption::normalise;
use crate::config::TextBranchConfig;
use crate::error::{Error, Result};

/// Token ids of one caption, at its own length (at most `max_len`); batches pad them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
}

impl Tokens {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Token ids and their 1/0 mask for a batch, row-major `[batch, width]`: what the model's token
/// tensors are built from.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRows {
    pub ids: Vec<i64>,
    pub mask: Vec<f32>,
    pub shape: [usize; 2],
}

/// Caption lengths a GPU backend pads batches to. Its kernels are compiled (and tuned) per
/// shape, so padding every caption to one of these few lengths means a warm-up over them
/// leaves nothing to compile for any later caption; padding is masked, so the answer is the
/// same. The CPU backend compiles nothing and pads only to the batch's longest caption.
pub const LENGTH_BUCKETS: [usize; 4] = [16, 32, 64, 128];

/// The caption tokenizer: a `tokenizer.json` (normaliser, pre-tokeniser, vocabulary) plus the
/// config's length and padding settings.
#[derive(Clone)]
pub struct TextPreprocessor {
    pub(super) tokenizer: Tokenizer,
    pub(super) config: TextBranchConfig,
    /// Pad batches to the next of [`LENGTH_BUCKETS`] instead of the longest caption.
    bucketed: bool,
}

impl TextPreprocessor {
    pub fn from_json(tokenizer_json: &[u8], config: TextBranchConfig) -> Result<Self> {
        let tokenizer =
            Tokenizer::from_bytes(tokenizer_json).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Self::new(tokenizer, config)
    }

    pub fn new(mut tokenizer: Tokenizer, config: TextBranchConfig) -> Result<Self> {
        if config.pretrained() {
            // A pretrained tokenizer.json may carry its own truncation and padding (MiniLM's pads
            // every caption to 128): the config decides both, and truncation goes through the
            // tokenizer so `[SEP]` survives it.
            tokenizer
                .with_truncation(Some(tokenizers::TruncationParams {
                    max_length: config.preprocess.max_len,
                    ..Default::default()
                }))
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            tokenizer.with_padding(None);
        }
        let vocab = tokenizer.get_vocab_size(true);
        if vocab != config.vocab_size() {
            return Err(Error::Tokenizer(format!(
                "tokenizer has {vocab} tokens, the config expects {}",
                config.vocab_size()
            )));
        }
        Ok(Self {
            tokenizer,
            config,
            bucketed: false,
        })
    }

    /// Pad batches to the next of [`LENGTH_BUCKETS`] (for a GPU backend; see there).
    pub fn pad_to_buckets(&mut self, bucketed: bool) {
        self.bucketed = bucketed;
    }

    /// Every width a batch of captions can be padded to: the buckets up to `max_len` (and
    /// `max_len` itself) when bucketed, the single `max_len` of the LSTM, or `None` when a
    /// transformer pads to the longest caption (any width).
    pub fn widths(&self) -> Option<Vec<usize>> {
        let max_len = self.config.preprocess.max_len;
        if !self.config.pretrained() {
            return Some(vec![max_len]);
        }
        self.bucketed.then(|| {
            let mut widths: Vec<usize> = LENGTH_BUCKETS
                .iter()
                .copied()
                .filter(|&w| w < max_len)
                .collect();
            widths.push(max_len);
            widths
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Check a caption the way the page and the CLI must: non-empty, not absurdly long.
    pub fn validate(&self, caption: &str) -> Result<()> {
        if caption.trim().is_empty() {
            return Err(Error::EmptyCaption);
        }
        let limit = self.config.preprocess.max_bytes;
        if caption.len() > limit {
            return Err(Error::CaptionTooLong {
                len: caption.len(),
                limit,
            });
        }
        Ok(())
    }

    /// The caption as the tokenizer sees it (emoji spelled out where the config says so).
    pub fn normalise<'a>(&self, caption: &'a str) -> Cow<'a, str> {
        normalise(&self.config.preprocess, caption)
    }

    /// Token ids, truncated to `max_len`. An empty caption (a tweet that was only whitespace)
    /// gives no tokens; batches pad it and the model's pooling copes with that.
    pub fn encode(&self, caption: &str) -> Result<Tokens> {
        let caption = self.normalise(caption);
        let encoding = self
            .tokenizer
            .encode(caption.as_ref(), self.config.pretrained())
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids: Vec<u32> = encoding.get_ids().to_vec();
        ids.truncate(self.config.preprocess.max_len);
        Ok(Tokens { ids })
    }

    /// Stack captions into `[batch, width]` ids and mask, padded with `pad_id`. The LSTM
    /// always reads `max_len` steps; a transformer only the batch's longest caption, or the
    /// bucket above it (padding is masked out of attention and pooling, so shorter captions
    /// give the same result).
    pub fn rows(&self, tokens: &[&Tokens]) -> TokenRows {
        let settings = &self.config.preprocess;
        let batch = tokens.len();
        let longest = tokens.iter().map(|t| t.len()).max().unwrap_or(0).max(1);
        let width = match self.widths() {
            Some(widths) => widths
                .into_iter()
                .find(|&w| w >= longest)
                .unwrap_or(settings.max_len),
            None => longest,
        };
        let mut ids = Vec::with_capacity(batch * width);
        let mut mask = Vec::with_capacity(batch * width);
        for t in tokens {
            let real = t.len().min(width);
            ids.extend(t.ids[..real].iter().map(|&id| id as i64));
            ids.extend(std::iter::repeat_n(settings.pad_id as i64, width - real));
            mask.extend((0..width).map(|i| if i < real { 1.0f32 } else { 0.0 }));
        }
        TokenRows {
            ids,
            mask,
            shape: [batch, width],
        }
    }

    /// A lone padding token: what a caption with every word hidden reads as (an empty row
    /// would have nothing to pool).
    pub fn padding(&self) -> Tokens {
        Tokens {
            ids: vec![self.config.preprocess.pad_id],
        }
    }

    /// Ids back to text, for inspection and the round-trip test.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }
}
