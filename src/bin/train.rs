//! `cargo run --bin train`: train the model on an MVSA lab folder and write a model folder.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use mvsa_sentiment::Modality;
use mvsa_sentiment::encoders::{ImageEncoderKind, TextEncoderKind};
use mvsa_sentiment::training::{
    DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, Selection, Trainer, TrainingOptions,
};

/// Train the image + caption sentiment model on a folder in the MVSA course-lab layout
/// (data/<guid>.jpg|.txt, train.txt) and write a model folder (weights, config, tokenizer,
/// metrics, plots). The defaults reproduce the shipped model in www/model: pretrained encoders
/// (run `bash scripts/fetch-encoders.sh` once first), MobileNetV2 frozen and MiniLM's top two
/// layers fine-tuned, with heads on their cached features. `--small` trains the from-scratch
/// model of www/model-small instead.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Lab folder to train on.
    #[arg(long, default_value = "../shared/data/mvsa-single")]
    data: PathBuf,
    /// Model folder to write [default: www/model, or www/model-small with --small].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Branches to train: both (fused), or one alone for ablations.
    #[arg(long, value_enum, default_value_t = Modality::Both)]
    modality: Modality,
    /// Picture encoder: a frozen pretrained CNN, or a small CNN trained from scratch.
    #[arg(long, value_enum, default_value_t = DEFAULT_IMAGE_ENCODER)]
    image_encoder: ImageEncoderKind,
    /// Caption encoder: pretrained all-MiniLM-L6-v2, or Embedding + BiLSTM trained from scratch.
    #[arg(long, value_enum, default_value_t = DEFAULT_TEXT_ENCODER)]
    text_encoder: TextEncoderKind,
    /// The small from-scratch model (both encoders `scratch`, with its own defaults).
    #[arg(long, conflicts_with_all = ["image_encoder", "text_encoder"])]
    small: bool,
    /// Most epochs to run (early stopping may end sooner) [default: 8 fine-tuning, 60 heads
    /// only, 12 small].
    #[arg(long)]
    epochs: Option<usize>,
    /// Pairs per training step [default: 32].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam learning rate of the heads and scratch encoders [default: 0.001].
    #[arg(long)]
    lr: Option<f64>,
    /// Seed for the split, initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = TrainingOptions::default().seed)]
    seed: u64,
    /// Share of each class held out for validation.
    #[arg(long, default_value_t = TrainingOptions::default().val_fraction)]
    val_fraction: f64,
    /// Train on a stratified subset of this many labelled pairs (quick runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Epochs without a better validation score before stopping [default: 8 fine-tuning, 15
    /// heads only, 5 small].
    #[arg(long)]
    patience: Option<usize>,
    /// Validation score that picks the epoch to keep.
    #[arg(long, value_enum, default_value_t = TrainingOptions::default().select)]
    select: Selection,
    /// Class weights = (majority count / class count)^power; 0 turns weighting off.
    #[arg(long, default_value_t = TrainingOptions::default().class_weight_power)]
    class_weight_power: f64,
    /// Largest WordPiece vocabulary to learn from the training captions (scratch text encoder).
    #[arg(long, default_value_t = TrainingOptions::default().vocab_size)]
    vocab_size: usize,
    /// Tokens kept per caption (scratch text encoder; MiniLM keeps 128).
    #[arg(long, default_value_t = TrainingOptions::default().max_len)]
    max_len: usize,
    /// Side of the square picture the network sees (scratch image encoder; the pretrained CNNs
    /// see 224).
    #[arg(long, default_value_t = TrainingOptions::default().image_size)]
    image_size: usize,
    /// Dropout on each branch's features [default: 0.3].
    #[arg(long)]
    dropout: Option<f64>,
    /// Share of caption tokens hidden behind [UNK] in each training batch.
    #[arg(long, default_value_t = TrainingOptions::default().word_dropout)]
    word_dropout: f64,
    /// Weight of each branch's own loss next to the fused loss (modality both).
    #[arg(long, default_value_t = TrainingOptions::default().branch_loss_weight)]
    branch_loss_weight: f64,
    /// Fine-tune this many of MiniLM's top layers along with the heads [default: 2]; 0 keeps
    /// every encoder frozen, so retraining runs on cached features alone and takes seconds.
    #[arg(long)]
    finetune_layers: Option<usize>,
    /// Adam learning rate of the fine-tuned MiniLM layers.
    #[arg(long)]
    finetune_lr: Option<f64>,
    /// Store the weights in f32 rather than f16.
    #[arg(long)]
    full_precision: bool,
    /// No progress bars or per-epoch lines.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
    mvsa_sentiment::run_cli(|| run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let (image, text) = if args.small {
        (ImageEncoderKind::Scratch, TextEncoderKind::Scratch)
    } else {
        (args.image_encoder, args.text_encoder)
    };
    let mut preset = TrainingOptions::for_encoders(image, text);
    // Without the caption there is no MiniLM to fine-tune: heads only.
    if args.finetune_layers == Some(0) || args.modality == Modality::Image {
        preset = preset.heads_only();
    }
    let options = TrainingOptions {
        modality: args.modality,
        epochs: args.epochs.unwrap_or(preset.epochs),
        batch_size: args.batch_size.unwrap_or(preset.batch_size),
        lr: args.lr.unwrap_or(preset.lr),
        seed: args.seed,
        val_fraction: args.val_fraction,
        limit: args.limit,
        patience: args.patience.unwrap_or(preset.patience),
        select: args.select,
        class_weight_power: args.class_weight_power,
        vocab_size: args.vocab_size,
        max_len: args.max_len,
        image_size: args.image_size,
        dropout: args.dropout.unwrap_or(preset.dropout),
        branch_loss_weight: args.branch_loss_weight,
        word_dropout: args.word_dropout,
        finetune_layers: args.finetune_layers.unwrap_or(preset.finetune_layers),
        finetune_lr: args.finetune_lr.unwrap_or(preset.finetune_lr),
        half_precision: preset.half_precision && !args.full_precision,
        ..preset
    };
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.small {
            "www/model-small"
        } else {
            "www/model"
        })
    });
    let trainer = Trainer {
        options,
        verbose: !args.quiet,
    };
    let metrics = trainer.run(&args.data, &out)?;
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
    println!("model folder written to {}", out.display());
    Ok(())
}
