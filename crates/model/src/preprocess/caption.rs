//! Caption bytes → text, the way the tweets were written, and text → what the tokenizer
//! reads (emoji spelled out).

use std::borrow::Cow;

use crate::config::TextPreprocessing;

/// Decode a caption from raw bytes, the way the tweets were written: UTF-8 if the whole caption
/// is valid UTF-8; else GBK (the Chinese Windows code page, which is what the data set's other
/// captions are: `A1 B0` is "“", `A1 AD` is "…") if it is valid GBK; else valid UTF-8 runs as
/// they are with every invalid byte read as Windows-1252 (a superset of Latin-1's printable
/// characters). A byte-order mark and surrounding whitespace are dropped.
pub fn decode_caption(bytes: &[u8]) -> String {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => match encoding_rs::GBK.decode_without_bom_handling_and_without_replacement(bytes)
        {
            Some(text) => text.into_owned(),
            None => utf8_or_windows_1252(bytes),
        },
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    text.trim().to_owned()
}

/// Valid UTF-8 runs kept (emoji included), each invalid byte read as Windows-1252.
fn utf8_or_windows_1252(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            let (latin, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(chunk.invalid());
            text.push_str(&latin);
        }
    }
    text
}

/// Emoji spelled out as their names, between spaces ("so sad 😭" → "so sad  loudly crying face
/// "; skin tones left out): MiniLM's vocabulary has next to no emoji, so otherwise "😭💔" and
/// "👍" are the same `[UNK]`. The longest emoji sequence at each place wins (flags, families
/// and skin tones are several code points).
pub fn spell_emoji(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match (!c.is_ascii()).then(|| longest_emoji(rest)).flatten() {
            Some((emoji, len)) => {
                // A toned emoji is named as its untoned form ("thumbs up: medium skin tone"
                // → "thumbs up"); other qualifiers stay ("person: blond hair").
                let untoned = emoji.with_skin_tone(emojis::SkinTone::Default);
                let name = untoned.unwrap_or(emoji).name();
                out.push(' ');
                out.push_str(name);
                out.push(' ');
                rest = &rest[len..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Cow::Owned(out)
}

/// A caption as the tokenizer (also the one being learned) sees it, per the config.
pub fn normalise<'a>(settings: &TextPreprocessing, caption: &'a str) -> Cow<'a, str> {
    match settings.emoji_names {
        true => spell_emoji(caption),
        false => Cow::Borrowed(caption),
    }
}

/// The longest emoji at the start of `s` (sequences are at most 10 code points) and its length
/// in bytes.
fn longest_emoji(s: &str) -> Option<(&'static emojis::Emoji, usize)> {
    let ends = s.char_indices().map(|(i, _)| i).skip(1).chain([s.len()]);
    ends.take(10)
        .filter_map(|end| emojis::get(&s[..end]).map(|emoji| (emoji, end)))
        .last()
}
