//! Which precision each part of the model is stored in: a plan such as `int8` (one of the
//! uniform formats) or `int8,word-embeddings=int4,pointwise=int8` (a format, then the parts
//! stored otherwise). The trainer's `--weights` takes one; `metrics.json` records it so.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::WeightFormat;

/// A part of the model whose parameters are stored alike, told apart by module path and shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The caption encoder's token embeddings (MiniLM's word embeddings, the BiLSTM's table).
    WordEmbeddings,
    /// The caption encoder's layers: MiniLM's six, the BiLSTM's gates.
    TextLayers,
    /// Every other weight matrix: the heads, the fusion, MiniLM's position embeddings.
    Matrices,
    /// 1×1 convolutions (MobileNetV2's expansions, projections and head convolution).
    Pointwise,
    /// Depthwise convolutions (one kernel per channel): small, and sensitive.
    Depthwise,
    /// Every other convolution (MobileNetV2's stem; the scratch CNN's).
    Stem,
}

const PARTS: [(Part, &str); 6] = [
    (Part::WordEmbeddings, "word-embeddings"),
    (Part::TextLayers, "text-layers"),
    (Part::Matrices, "matrices"),
    (Part::Pointwise, "pointwise"),
    (Part::Depthwise, "depthwise"),
    (Part::Stem, "stem"),
];

impl Part {
    /// The part a parameter at module `path` (dot-separated) with `shape` belongs to; `None`
    /// for vectors and small matrices, which always stay in the plan's float format.
    pub fn of(path: &str, shape: &[usize]) -> Option<Part> {
        // Enum variants enter the path capitalised (`text.encoder.Scratch.embedding`).
        let path = path.to_ascii_lowercase();
        match *shape {
            [_, _, 1, 1] => Some(Part::Pointwise),
            [_, 1, _, _] => Some(Part::Depthwise),
            [_, _, _, _] => Some(Part::Stem),
            [rows, columns] if rows * columns >= 1024 => Some(
                if path.contains("word_embeddings")
                    || path.contains("text.encoder.scratch.embedding")
                {
                    Part::WordEmbeddings
                } else if path.contains("encoder.layer.") || path.contains(".lstm.") {
                    Part::TextLayers
                } else {
                    Part::Matrices
                },
            ),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        name_of(&PARTS, self)
    }
}

/// How one parameter is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    F32,
    F16,
    /// Symmetric 8-bit with an f16 scale per block of at most this many values
    /// ([`super::quant_block`]): `int8`, or `int8/128` for larger blocks.
    Int8(u8),
    /// Symmetric 4-bit, blocks the same way, eight values to a 32-bit word in the file.
    Int4(u8),
}

/// Values per block unless the plan says otherwise (`int4/128`).
pub const DEFAULT_BLOCK: u8 = 32;
/// The block sizes a plan may ask for.
const BLOCKS: [u8; 5] = [8, 16, 32, 64, 128];
const PRECISIONS: [&str; 4] = ["f32", "f16", "int8", "int4"];

/// One part stored one way: `pointwise=int8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub part: Part,
    pub storage: Storage,
}

/// A uniform format and the parts stored otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightPlan {
    base: WeightFormat,
    /// At most one per part, in [`Part`]'s order.
    choices: Vec<Choice>,
}

impl WeightPlan {
    pub fn uniform(base: WeightFormat) -> Self {
        WeightPlan {
            base,
            choices: Vec::new(),
        }
    }

    /// The plan with `choice` replacing whatever it said of that part.
    pub fn with(mut self, choice: Choice) -> Self {
        self.choices.retain(|c| c.part != choice.part);
        self.choices.push(choice);
        self.choices.sort_by_key(|c| c.part);
        self
    }

    /// How a parameter of `part` is stored (`None`: a vector or small matrix).
    pub fn storage(&self, part: Option<Part>) -> Storage {
        let float = match self.base {
            WeightFormat::F32 => Storage::F32,
            _ => Storage::F16,
        };
        let Some(part) = part else {
            return float;
        };
        if let Some(choice) = self.choices.iter().find(|c| c.part == part) {
            return choice.storage;
        }
        match (self.base, part) {
            (WeightFormat::Int8, Part::WordEmbeddings | Part::TextLayers | Part::Matrices) => {
                Storage::Int8(DEFAULT_BLOCK)
            }
            _ => float,
        }
    }

    /// Whether any part is stored in 4 bits (the file then needs packing).
    pub fn has_int4(&self) -> bool {
        (self.choices.iter()).any(|c| matches!(c.storage, Storage::Int4(_)))
    }
}

/// The error of a plan that does not parse: what was read, and what is accepted.
fn unknown(what: &str, read: &str, accepted: &[&str]) -> String {
    format!("unknown {what} `{read}` (one of: {})", accepted.join(", "))
}

fn name_of<T: Copy + PartialEq>(table: &[(T, &'static str)], value: T) -> &'static str {
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map_or("?", |(_, n)| n)
}

fn parse_in<T: Copy>(table: &[(T, &'static str)], what: &str, read: &str) -> Result<T, String> {
    let names: Vec<&str> = table.iter().map(|(_, n)| *n).collect();
    (table.iter().find(|(_, n)| *n == read))
        .map(|(v, _)| *v)
        .ok_or_else(|| unknown(what, read, &names))
}

impl FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (part, storage) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not PART=PRECISION (e.g. pointwise=int8)"))?;
        Ok(Choice {
            part: parse_in(&PARTS, "part", part.trim())?,
            storage: storage.trim().parse()?,
        })
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.part.name(), self.storage)
    }
}

impl FromStr for Storage {
    type Err = String;

    /// `f32`, `f16`, `int8`, `int4`; the integer ones may name their block: `int4/128`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, block) = match s.split_once('/') {
            Some((name, block)) => (name, Some(block)),
            None => (s, None),
        };
        let block = match block {
            None => DEFAULT_BLOCK,
            Some(read) => (read.parse().ok())
                .filter(|b| BLOCKS.contains(b))
                .ok_or_else(|| unknown("block size", read, &["8", "16", "32", "64", "128"]))?,
        };
        match (name, block == DEFAULT_BLOCK) {
            ("f32", true) => Ok(Storage::F32),
            ("f16", true) => Ok(Storage::F16),
            ("int8", _) => Ok(Storage::Int8(block)),
            ("int4", _) => Ok(Storage::Int4(block)),
            _ => Err(unknown("precision", s, &PRECISIONS)),
        }
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, block) = match *self {
            Storage::F32 => ("f32", DEFAULT_BLOCK),
            Storage::F16 => ("f16", DEFAULT_BLOCK),
            Storage::Int8(block) => ("int8", block),
            Storage::Int4(block) => ("int4", block),
        };
        match block {
            DEFAULT_BLOCK => write!(f, "{name}"),
            block => write!(f, "{name}/{block}"),
        }
    }
}

impl FromStr for WeightPlan {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut items = s.split(',').map(str::trim);
        let base = items.next().unwrap_or_default();
        let formats = [
            (WeightFormat::F32, "f32"),
            (WeightFormat::F16, "f16"),
            (WeightFormat::Int8, "int8"),
        ];
        let base = parse_in(&formats, "weight format", base)?;
        items.try_fold(WeightPlan::uniform(base), |plan, item| {
            Ok(plan.with(item.parse()?))
        })
    }
}

impl fmt::Display for WeightPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = match self.base {
            WeightFormat::F32 => "f32",
            WeightFormat::F16 => "f16",
            WeightFormat::Int8 => "int8",
        };
        write!(f, "{base}")?;
        self.choices.iter().try_for_each(|c| write!(f, ",{c}"))
    }
}

impl Serialize for Choice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Choice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for WeightPlan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WeightPlan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_read_and_print_alike() {
        let plan: WeightPlan = "int8, pointwise=int8,word-embeddings=int4".parse().unwrap();
        assert_eq!(plan.to_string(), "int8,word-embeddings=int4,pointwise=int8");
        assert_eq!(plan.storage(Some(Part::WordEmbeddings)), Storage::Int4(32));
        assert_eq!(plan.storage(Some(Part::TextLayers)), Storage::Int8(32));
        assert_eq!(plan.storage(Some(Part::Depthwise)), Storage::F16);
        assert_eq!(plan.storage(None), Storage::F16);
        assert!(plan.has_int4());
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<WeightPlan>(&json).unwrap(), plan);
        // What metrics files said before plans: a format alone.
        let old: WeightPlan = serde_json::from_str("\"int8\"").unwrap();
        assert_eq!(old, WeightPlan::uniform(WeightFormat::Int8));
        assert!(!old.has_int4());
    }

    #[test]
    fn integer_precisions_may_name_their_block() {
        let plan: WeightPlan = "int8,word-embeddings=int4/128,pointwise=int8/32"
            .parse()
            .unwrap();
        assert_eq!(
            plan.to_string(),
            "int8,word-embeddings=int4/128,pointwise=int8"
        );
        assert_eq!(plan.storage(Some(Part::WordEmbeddings)), Storage::Int4(128));
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<WeightPlan>(&json).unwrap(), plan);
        let err = "f16,pointwise=int8/100".parse::<WeightPlan>().unwrap_err();
        assert!(err.contains("`100`") && err.contains("128"), "{err}");
        let err = "f16,pointwise=f16/64".parse::<WeightPlan>().unwrap_err();
        assert!(err.contains("`f16/64`"), "{err}");
    }

    #[test]
    fn a_later_choice_of_a_part_replaces_the_earlier() {
        let plan: WeightPlan = "f32,pointwise=int8,pointwise=int4".parse().unwrap();
        assert_eq!(plan.to_string(), "f32,pointwise=int4");
        assert_eq!(plan.storage(None), Storage::F32);
    }

    #[test]
    fn bad_plans_say_what_is_accepted() {
        let err = "int3".parse::<WeightPlan>().unwrap_err();
        assert!(err.contains("`int3`") && err.contains("f16"), "{err}");
        let err = "f16,heads=int4".parse::<WeightPlan>().unwrap_err();
        assert!(err.contains("`heads`") && err.contains("matrices"), "{err}");
        let err = "f16,pointwise".parse::<WeightPlan>().unwrap_err();
        assert!(err.contains("PART=PRECISION"), "{err}");
    }

    #[test]
    fn parameters_fall_in_parts_by_path_and_shape() {
        let of = Part::of;
        let word = "text.encoder.pretrained.embeddings.word_embeddings.weight";
        assert_eq!(of(word, &[30522, 384]), Some(Part::WordEmbeddings));
        let table = "text.encoder.Scratch.embedding.weight";
        assert_eq!(of(table, &[6000, 96]), Some(Part::WordEmbeddings));
        let query = "text.encoder.pretrained.encoder.layer.3.attention.query.weight";
        assert_eq!(of(query, &[384, 384]), Some(Part::TextLayers));
        let gate = "text.encoder.scratch.lstm.forward.input_gate.input_transform.weight";
        assert_eq!(of(gate, &[96, 96]), Some(Part::TextLayers));
        assert_eq!(
            of("fusion.hidden.weight", &[768, 128]),
            Some(Part::Matrices)
        );
        let conv = "image.encoder.pretrained.blocks.1.expand.conv.weight";
        assert_eq!(of(conv, &[96, 16, 1, 1]), Some(Part::Pointwise));
        assert_eq!(of(conv, &[96, 1, 3, 3]), Some(Part::Depthwise));
        assert_eq!(of(conv, &[32, 3, 3, 3]), Some(Part::Stem));
        assert_eq!(of("fusion.hidden.bias", &[128]), None);
        assert_eq!(of("image.head.weight", &[3, 3]), None);
    }
}
