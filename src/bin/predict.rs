//! `cargo run --release --bin predict`: classify pairs with a model folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use clap::Parser;
use mvsa_model::preprocess::decode_caption;
use mvsa_model::{Classifier, Note, NoteKind, Pair, Prediction, Prepared};
use mvsa_sentiment::cli::{self, Bars};
use mvsa_sentiment::data::{self, LabFolder};
use mvsa_sentiment::progress::Progress;
use serde_json::{Map, Value, json};

/// Classify image + caption pairs as negative / neutral / positive.
///
/// Batch mode (--data, --list, --out) writes `guid,tag` for every guid of a train.txt-style
/// list (its tag column is ignored). Single mode (--image and --text or --text-file) prints the
/// label and the fused, image-branch and text-branch probabilities as JSON.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Model folder written by `train`.
    #[arg(long, default_value = "www/model")]
    model: PathBuf,
    /// Lab folder holding data/<guid>.jpg|.txt (batch mode).
    #[arg(long, requires = "list")]
    data: Option<PathBuf>,
    /// `guid,tag` list of pairs to classify (batch mode), e.g. test_without_label.txt.
    #[arg(long, requires_all = ["data", "out"])]
    list: Option<PathBuf>,
    /// CSV to write (batch mode); `-` for standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Picture to classify (single mode).
    #[arg(long, conflicts_with = "list")]
    image: Option<PathBuf>,
    /// Caption to classify (single mode).
    #[arg(long, conflicts_with_all = ["list", "text_file"])]
    text: Option<String>,
    /// File holding the caption, read as raw bytes like the lab's data/<guid>.txt.
    #[arg(long, conflicts_with = "list")]
    text_file: Option<PathBuf>,
    /// Pairs per forward pass in batch mode.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

fn main() -> std::process::ExitCode {
    cli::run(|| run(Args::parse()))
}

fn load(dir: &Path) -> Result<Classifier> {
    mvsa_sentiment::listing::verify_listed(dir)?;
    Classifier::load(dir, &Device::flex())
        .with_context(|| format!("cannot load the model folder {}", dir.display()))
}

fn run(args: Args) -> Result<()> {
    if let (Some(data), Some(list), Some(out)) = (&args.data, &args.list, &args.out) {
        let classifier = load(&args.model)?;
        return predict_list(&classifier, data, list, out, args.batch_size.max(1));
    }
    let caption = match (&args.text, &args.text_file) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(path)) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some(decode_caption(&bytes))
        }
        (None, None) => None,
    };
    if args.image.is_none() && caption.is_none() {
        bail!("nothing to classify: give --data/--list/--out, or --image and/or --text");
    }
    let classifier = load(&args.model)?;
    let image = match &args.image {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let pair = Pair {
        image: image.as_deref(),
        caption: caption.as_deref(),
    };
    let predictions = classifier
        .classify(&[pair])
        .with_context(|| match &args.image {
            Some(path) => format!("cannot classify {}", path.display()),
            None => "cannot classify the caption".to_string(),
        })?;
    let prediction = predictions.first().context("no prediction came back")?;
    println!("{}", serde_json::to_string_pretty(&to_json(prediction))?);
    Ok(())
}

fn to_json(p: &Prediction) -> Value {
    let probs = |v: &Option<Vec<f32>>| match v {
        Some(v) => Value::Object(
            p.labels
                .iter()
                .zip(v)
                .map(|(l, x)| (l.clone(), json!(x)))
                .collect::<Map<_, _>>(),
        ),
        None => Value::Null,
    };
    json!({
        "label": p.label,
        "probabilities": {
            "fused": probs(&Some(p.scores.fused.clone())),
            "image": probs(&p.scores.image),
            "text": probs(&p.scores.text),
        },
        "notes": p.notes.iter().map(|n| n.text.clone()).collect::<Vec<_>>(),
    })
}

/// Classify every guid of `list` under the model crate's rule for a folder's pairs
/// ([`Classifier::prepare_any`]): an empty caption leaves the picture alone, a picture that
/// cannot be read (or is missing) the caption alone, each with a warning naming the file.
fn predict_list(
    classifier: &Classifier,
    data_dir: &Path,
    list: &Path,
    out: &Path,
    batch_size: usize,
) -> Result<()> {
    let folder = LabFolder::open(data_dir)?;
    let rows = data::read_list(list)?;
    let progress = Bars::new();
    progress.begin("reading", rows.len());
    let mut prepared = Vec::with_capacity(rows.len());
    let mut fallbacks = 0;
    for row in &rows {
        let guid = &row.guid;
        let warn = |what: &str| progress.note(&format!("warning: guid {guid}: {what}"));
        let caption = folder.read_caption(guid)?;
        let image = match folder.read_image(guid) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                warn(&format!("{e:#}; using the caption alone"));
                None
            }
        };
        let pair = Pair {
            image: image.as_deref(),
            caption: Some(&caption),
        };
        let pair: Prepared = classifier
            .prepare_any(pair)
            .with_context(|| format!("guid {guid}: cannot classify"))?;
        // A missing picture was warned about above, with the reason it could not be read.
        let said = |n: &&Note| n.kind != NoteKind::PictureMissing;
        for note in pair.notes.iter().filter(said) {
            let path = match note.kind {
                NoteKind::PictureUnreadable => folder.image_path(guid),
                _ => folder.caption_path(guid),
            };
            warn(&format!("{}: {}", path.display(), note.text));
        }
        fallbacks += usize::from(pair.image.is_none() || pair.tokens.is_none());
        prepared.push(pair);
        progress.advance(1, None);
    }
    progress.begin("classifying", rows.len());
    let mut predictions = Vec::with_capacity(rows.len());
    for chunk in prepared.chunks(batch_size) {
        predictions.extend(classifier.run(chunk)?);
        progress.advance(chunk.len(), None);
    }
    progress.finish();
    let mut csv = String::from("guid,tag\n");
    for (row, p) in rows.iter().zip(&predictions) {
        csv.push_str(&format!("{},{}\n", row.guid, p.label));
    }
    if out.as_os_str() == "-" {
        std::io::stdout().write_all(csv.as_bytes())?;
    } else {
        std::fs::write(out, csv).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("wrote {} predictions to {}", rows.len(), out.display());
    }
    if fallbacks > 0 {
        eprintln!("warning: {fallbacks} pairs were classified from one part alone");
    }
    Ok(())
}
