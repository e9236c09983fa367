//! `bench --profile`: where one classification's time goes, operation by operation, in the
//! pretrained encoders on the flex CPU backend; the bench page's pair (`www/samples/2626.jpg`
//! and its 13-token caption), one pair at a time as the page classifies.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use mvsa_model::folder::ModelFiles;
use mvsa_model::model::{ImageEncoder, SentimentModel, TextEncoder};
use mvsa_model::preprocess::TextPreprocessor;
use mvsa_model::{Classifier, Pair};

/// The bench page's caption (www/bench.html).
const CAPTION: &str = "Nice day chilling in the park yesterday #friends #summer";
const WARM_UP: usize = 3;
const ROUNDS: usize = 15;

/// Milliseconds per operation kind, summed over one pass, each kind's median over the rounds.
struct Profile {
    rounds: HashMap<&'static str, Vec<f64>>,
    calls: HashMap<&'static str, usize>,
}

impl Profile {
    /// Runs `pass` `WARM_UP + ROUNDS` times; `pass` calls its `step` after each operation.
    fn measure(mut pass: impl FnMut(&mut (dyn FnMut(&'static str) + Send))) -> Self {
        let mut profile = Profile {
            rounds: HashMap::new(),
            calls: HashMap::new(),
        };
        for round in 0..WARM_UP + ROUNDS {
            let mut this: HashMap<&'static str, f64> = HashMap::new();
            let mut calls: HashMap<&'static str, usize> = HashMap::new();
            let mut last = Instant::now();
            pass(&mut |name| {
                let now = Instant::now();
                *this.entry(name).or_default() += (now - last).as_secs_f64() * 1e3;
                *calls.entry(name).or_default() += 1;
                last = now;
            });
            if round < WARM_UP {
                continue;
            }
            for (name, ms) in this {
                profile.rounds.entry(name).or_default().push(ms);
            }
            profile.calls = calls;
        }
        profile
    }

    fn print(&self, title: &str) {
        // Slowest first.
        let mut medians: Vec<(&str, f64)> = (self.rounds.iter())
            .map(|(name, ms)| (*name, median(ms)))
            .collect();
        medians.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f64 = medians.iter().map(|(_, ms)| ms).sum();
        println!("{title}: {total:.2} ms (sum of the per-operation medians, {ROUNDS} rounds)");
        for (name, ms) in medians {
            println!(
                "  {name:<40} {ms:>8.2} ms {:>5.1} %  ({} calls)",
                100.0 * ms / total.max(1e-9),
                self.calls.get(name).copied().unwrap_or(0)
            );
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// `burn`: Burn's own operations, as the classifier ran before it had kernels of its own (and
/// still runs on WebGPU), rather than what it runs on the CPU now.
pub fn run(model: &Path, samples: &Path, burn: bool) -> Result<()> {
    let classifier = match burn {
        false => Classifier::load(model, &Device::flex())?,
        true => burn_classifier(model)?,
    };
    let picture = samples.join("2626.jpg");
    let image =
        std::fs::read(&picture).with_context(|| format!("reading {}", picture.display()))?;
    let prepared = classifier.prepare(Pair {
        image: Some(&image),
        caption: Some(CAPTION),
    })?;
    let (images, tokens) = classifier.inputs(&[&prepared]);
    let encoders = classifier.model();
    println!(
        "profile: {} with the bench page's pair, one at a time, {} on the flex CPU backend, {} rayon threads",
        model.display(),
        if burn {
            "Burn's operations"
        } else {
            "the classifier's kernels"
        },
        rayon_threads()
    );
    match (encoders.image_encoder(), images) {
        (Some(ImageEncoder::Pretrained(cnn)), Some(images)) => Profile::measure(|step| {
            cnn.forward_profiled(images.clone(), step);
        })
        .print("image encoder"),
        _ => println!("image encoder: not a pretrained CNN, not profiled"),
    }
    match (encoders.text_encoder(), tokens) {
        (Some(TextEncoder::Pretrained(minilm)), Some(tokens)) => Profile::measure(|step| {
            minilm.encode_profiled(tokens.clone(), step);
        })
        .print("text encoder"),
        _ => println!("text encoder: not MiniLM, not profiled"),
    }
    if encoders.image_encoder().is_none() && encoders.text_encoder().is_none() {
        bail!("{}: the model has no encoder to profile", model.display());
    }
    Ok(())
}

/// The folder's model as stored, without the classifier's kernels.
fn burn_classifier(dir: &Path) -> Result<Classifier> {
    let files = ModelFiles::read(dir)?;
    let text = match (&files.config.text, &files.tokenizer) {
        (Some(branch), Some(json)) => Some(TextPreprocessor::from_json(json, branch.clone())?),
        _ => None,
    };
    let model = SentimentModel::from_stored(&files.config, files.weights)?;
    Ok(Classifier::from_model(
        files.config,
        model,
        text,
        &Device::flex(),
    ))
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all (RAYON_NUM_THREADS unset)".into())
}
