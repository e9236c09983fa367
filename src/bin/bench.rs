//! `cargo run --bin bench`: the numbers the README reports. Prints the frozen encoders'
//! feature-extraction time over a whole lab folder (with an empty feature cache), training time
//! per epoch, and predict throughput (pairs/s) on its test list.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::prelude::Device;
use clap::Parser;
use mvsa_sentiment::Classifier;
use mvsa_sentiment::data::{self, LabFolder};
use mvsa_sentiment::encoders::{ImageEncoderKind, TextEncoderKind};
use mvsa_sentiment::training::{Trainer, TrainingOptions};

/// Benchmark training and prediction; prints numbers, asserts nothing.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Lab folder (data/, train.txt, test_without_label.txt).
    #[arg(long, default_value = "../shared/data/mvsa-single")]
    data: PathBuf,
    /// Model folder to time prediction with.
    #[arg(long, default_value = "www/model")]
    model: PathBuf,
    /// Training epochs to time (0 skips the training benchmark).
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Train the small from-scratch model instead of the pretrained-encoder one.
    #[arg(long)]
    small: bool,
    /// Pairs per forward pass when predicting.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

fn main() -> std::process::ExitCode {
    mvsa_sentiment::run_cli(|| run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "machine: {} logical CPUs, {}",
        threads,
        std::env::consts::ARCH
    );

    if args.epochs > 0 {
        let out = tempfile::tempdir()?;
        // An empty feature cache, so extraction over the whole folder is timed.
        let features = tempfile::tempdir()?;
        // SAFETY: no other thread runs yet; the variable is read by this process only.
        unsafe { std::env::set_var("MVSA_FEATURES", features.path()) };
        let preset = if args.small {
            TrainingOptions::for_encoders(ImageEncoderKind::Scratch, TextEncoderKind::Scratch)
        } else {
            TrainingOptions::default()
        };
        let trainer = Trainer {
            options: TrainingOptions {
                epochs: args.epochs,
                patience: usize::MAX,
                ..preset
            },
            verbose: false,
        };
        let started = Instant::now();
        let metrics = trainer.run(&args.data, out.path())?;
        let total = started.elapsed().as_secs_f64();
        if let Some(f) = &metrics.features {
            println!(
                "features: {} pairs; image encoder {} ({} computed) {:.1} s = {:.1} pairs/s; text encoder {} ({} computed) {:.1} s = {:.1} pairs/s",
                f.pairs,
                trainer.options.image_encoder.name(),
                f.image_computed,
                f.image_seconds,
                f.image_computed as f64 / f.image_seconds.max(1e-9),
                trainer.options.text_encoder.name(),
                f.text_computed,
                f.text_seconds,
                f.text_computed as f64 / f.text_seconds.max(1e-9),
            );
        }
        let epochs: Vec<f64> = metrics.history.iter().map(|h| h.seconds).collect();
        let per_epoch = epochs.iter().sum::<f64>() / epochs.len() as f64;
        println!(
            "train: {} pairs, {:.1} s per epoch (epochs: {}), {:.1} s total incl. reading and tokenizer",
            metrics.train_pairs,
            per_epoch,
            epochs
                .iter()
                .map(|s| format!("{s:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            total
        );
    }

    let device = Device::flex();
    let classifier = Classifier::load(&args.model, &device)?;
    let folder = LabFolder::open(&args.data)?;
    let rows = data::read_list(&folder.root().join(data::TEST_LIST))?;
    let started = Instant::now();
    let mut raw = Vec::with_capacity(rows.len());
    for row in &rows {
        raw.push((
            folder.read_image(&row.guid)?,
            folder.read_caption(&row.guid)?,
        ));
    }
    let read = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let prepared = raw
        .iter()
        .map(|(image, caption)| classifier.prepare(Some(image), Some(caption)))
        .collect::<Result<Vec<_>, _>>()?;
    let preprocess = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut n = 0;
    for chunk in prepared.chunks(args.batch_size.max(1)) {
        n += classifier.classify_prepared(chunk)?.len();
    }
    let forward = started.elapsed().as_secs_f64();
    let total = read + preprocess + forward;
    println!(
        "predict: {n} pairs, {:.0} pairs/s end to end (read {:.2} s, decode+resize+tokenise {:.2} s, model {:.2} s = {:.0} pairs/s, batch {})",
        n as f64 / total,
        read,
        preprocess,
        forward,
        n as f64 / forward,
        args.batch_size
    );
    Ok(())
}
