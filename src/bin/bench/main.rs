//! `cargo run --bin bench`: the numbers docs/benchmarks.md reports. Prints the frozen encoders'
//! feature-extraction time over a whole lab folder (with an empty feature cache), training time
//! per epoch, and predict throughput (pairs/s) on its test list. With `--features webgpu` and
//! `--backend webgpu`, the model on Burn's WebGPU backend instead ([`gpu`]).

#[cfg(feature = "webgpu")]
mod gpu;
mod profile;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::prelude::Device;
use clap::{Parser, ValueEnum};
use mvsa_model::{Classifier, Pair};
use mvsa_sentiment::Trainer;
use mvsa_sentiment::cli;
use mvsa_sentiment::data::{self, LabFolder};
use mvsa_sentiment::pretrained::EncoderFiles;
use mvsa_sentiment::progress::Quiet;
use mvsa_sentiment::training::{TrainingConfig, TrainingOptions, config};

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
    /// Folder of the pretrained encoders' original files (scripts/fetch-encoders.sh).
    #[arg(long, env = "MVSA_ENCODERS", default_value_os_t = cli::cache_dir("encoders"))]
    encoders: PathBuf,
    /// cpu: training and prediction on the flex CPU backend. webgpu: the model on Burn's
    /// WebGPU backend natively, against the CPU's probabilities (needs `--features webgpu`).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// Pairs to classify one at a time on WebGPU (the test list's first, then train.txt's).
    #[arg(long, default_value_t = 32)]
    pairs: usize,
    /// Only profile the encoders operation by operation on the bench page's pair (flex CPU
    /// backend; `RAYON_NUM_THREADS=1` for the page's one thread), then stop.
    #[arg(long)]
    profile: bool,
    /// With --profile: Burn's own operations instead of the classifier's CPU kernels.
    #[arg(long, requires = "profile")]
    burn: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Cpu,
    Webgpu,
}

fn main() -> std::process::ExitCode {
    cli::run(|| run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "machine: {} logical CPUs, {}",
        threads,
        std::env::consts::ARCH
    );
    if args.backend == Backend::Webgpu {
        return webgpu(&args);
    }
    if args.profile {
        return profile::run(&args.model, std::path::Path::new("www/samples"), args.burn);
    }
    if args.epochs > 0 {
        training(&args)?;
    }
    predicting(&args)
}

#[cfg(feature = "webgpu")]
fn webgpu(args: &Args) -> Result<()> {
    let folder = LabFolder::open(&args.data)?;
    let mut rows = data::read_list(&folder.root().join(data::TEST_LIST))?;
    rows.extend(data::read_list(&folder.root().join(data::TRAIN_LIST))?);
    let pairs = rows
        .iter()
        .take(args.pairs.max(1))
        .map(|row| {
            Ok((
                folder.read_image(&row.guid)?,
                folder.read_caption(&row.guid)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    gpu::run(&args.model, &pairs)
}

#[cfg(not(feature = "webgpu"))]
fn webgpu(_: &Args) -> Result<()> {
    anyhow::bail!(
        "this bench was built without WebGPU: cargo run --bin bench --features webgpu -- --backend webgpu"
    )
}

/// Feature extraction with an empty cache, and `epochs` epochs of the default (or small) model.
fn training(args: &Args) -> Result<()> {
    let out = tempfile::tempdir()?;
    // An empty feature cache, so extraction over the whole folder is timed.
    let features = tempfile::tempdir()?;
    let encoders = EncoderFiles::new(&args.encoders);
    let model = match args.small {
        true => config::small_model(),
        false => config::default_model(encoders.minilm_config()?),
    };
    let options = TrainingOptions {
        epochs: args.epochs,
        patience: usize::MAX,
        ..TrainingOptions::preset(&model, None, 0)
    };
    let (image_name, text_name) = (
        model.image.as_ref().map_or("", |b| b.encoder.name()),
        model.text.as_ref().map_or("", |b| b.encoder.name()),
    );
    let trainer = Trainer {
        config: TrainingConfig { model, options },
        encoders,
        feature_cache: features.path().to_path_buf(),
        device: Device::flex(),
        progress: &Quiet,
    };
    let started = Instant::now();
    let metrics = trainer.run(&args.data, out.path())?;
    let total = started.elapsed().as_secs_f64();
    if let Some(f) = &metrics.features {
        for (name, computed, seconds) in [
            (image_name, f.image_computed, f.image_seconds),
            (text_name, f.text_computed, f.text_seconds),
        ] {
            // Nothing to time where the cache had everything.
            if computed > 0 {
                println!(
                    "features: {name}, {computed} of {} pairs computed in {seconds:.1} s = {:.1} pairs/s",
                    f.pairs,
                    computed as f64 / seconds.max(1e-9)
                );
            }
        }
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
    Ok(())
}

/// Predict throughput on the lab folder's test list, stage by stage.
fn predicting(args: &Args) -> Result<()> {
    let classifier = Classifier::load(&args.model, &Device::flex())?;
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
        .map(|(image, caption)| {
            classifier.prepare(Pair {
                image: Some(image),
                caption: Some(caption),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let preprocess = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut n = 0;
    for chunk in prepared.chunks(args.batch_size.max(1)) {
        n += classifier.run(chunk)?.len();
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
