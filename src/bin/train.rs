//! `cargo run --bin train`: train the model on an MVSA lab folder and write a model folder.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use mvsa_sentiment::Modality;
use mvsa_sentiment::training::{Selection, Trainer, TrainingOptions};

/// Train the image + caption sentiment model on a folder in the MVSA course-lab layout
/// (data/<guid>.jpg|.txt, train.txt) and write a model folder (weights, config, tokenizer,
/// metrics, plots). The defaults reproduce the shipped model in www/model.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Lab folder to train on.
    #[arg(long, default_value = "../shared/data/mvsa-single")]
    data: PathBuf,
    /// Model folder to write.
    #[arg(long, default_value = "www/model")]
    out: PathBuf,
    /// Branches to train: both (fused), or one alone for ablations.
    #[arg(long, value_enum, default_value_t = Modality::Both)]
    modality: Modality,
    /// Most epochs to run (early stopping may end sooner).
    #[arg(long, default_value_t = TrainingOptions::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = TrainingOptions::default().batch_size)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = TrainingOptions::default().lr)]
    lr: f64,
    /// Seed for the split, initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = TrainingOptions::default().seed)]
    seed: u64,
    /// Share of each class held out for validation.
    #[arg(long, default_value_t = TrainingOptions::default().val_fraction)]
    val_fraction: f64,
    /// Train on a stratified subset of this many labelled pairs (quick runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Epochs without a better validation score before stopping.
    #[arg(long, default_value_t = TrainingOptions::default().patience)]
    patience: usize,
    /// Validation score that picks the epoch to keep.
    #[arg(long, value_enum, default_value_t = TrainingOptions::default().select)]
    select: Selection,
    /// Class weights = (majority count / class count)^power; 0 turns weighting off.
    #[arg(long, default_value_t = TrainingOptions::default().class_weight_power)]
    class_weight_power: f64,
    /// Largest WordPiece vocabulary to learn from the training captions.
    #[arg(long, default_value_t = TrainingOptions::default().vocab_size)]
    vocab_size: usize,
    /// Tokens kept per caption.
    #[arg(long, default_value_t = TrainingOptions::default().max_len)]
    max_len: usize,
    /// Side of the square picture the network sees.
    #[arg(long, default_value_t = TrainingOptions::default().image_size)]
    image_size: usize,
    #[arg(long, default_value_t = TrainingOptions::default().dropout)]
    dropout: f64,
    /// Share of caption tokens hidden behind [UNK] in each training batch.
    #[arg(long, default_value_t = TrainingOptions::default().word_dropout)]
    word_dropout: f64,
    /// Weight of each branch's own loss next to the fused loss (modality both).
    #[arg(long, default_value_t = TrainingOptions::default().branch_loss_weight)]
    branch_loss_weight: f64,
    /// No progress bars or per-epoch lines.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
    mvsa_sentiment::run_cli(|| run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let options = TrainingOptions {
        modality: args.modality,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        val_fraction: args.val_fraction,
        limit: args.limit,
        patience: args.patience,
        select: args.select,
        class_weight_power: args.class_weight_power,
        vocab_size: args.vocab_size,
        max_len: args.max_len,
        image_size: args.image_size,
        dropout: args.dropout,
        branch_loss_weight: args.branch_loss_weight,
        word_dropout: args.word_dropout,
    };
    let trainer = Trainer {
        options,
        verbose: !args.quiet,
    };
    let metrics = trainer.run(&args.data, &args.out)?;
    let v = &metrics.validation;
    println!(
        "validation ({} pairs, epoch {} of {}): accuracy {:.4}, macro-F1 {:.4}, weighted-F1 {:.4}",
        metrics.validation_pairs,
        metrics.best_epoch,
        metrics.epochs_run,
        v.accuracy,
        v.macro_f1,
        v.weighted_f1
    );
    for (name, m) in [
        ("image branch", &metrics.image_branch),
        ("text branch", &metrics.text_branch),
    ] {
        if let Some(m) = m {
            println!(
                "  {name}: accuracy {:.4}, macro-F1 {:.4}",
                m.accuracy, m.macro_f1
            );
        }
    }
    println!("model folder written to {}", args.out.display());
    Ok(())
}
