//! `cargo run --bin train`: train the model on an MVSA lab folder and write a model folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use burn::prelude::Device;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use mvsa_model::ModelConfig;
use mvsa_model::config::{Fusion, ImageBranchConfig, TextBranchConfig};
use mvsa_sentiment::Trainer;
use mvsa_sentiment::cli::{self, Bars};
use mvsa_sentiment::listing;
use mvsa_sentiment::pretrained::EncoderFiles;
use mvsa_sentiment::progress::{Progress, Quiet};
use mvsa_sentiment::report::{self, MetricsFile};
use mvsa_sentiment::training::config::{Choice, TeacherText, WeightPlan};
use mvsa_sentiment::training::{Selection, TrainingConfig, TrainingOptions, config as presets};

/// Train the image + caption sentiment model on a folder in the MVSA course-lab layout
/// (data/<guid>.jpg|.txt, train.txt) and write a model folder (weights, config, tokenizer,
/// metrics, plots). The defaults reproduce the shipped model in www/model: pretrained encoders
/// (run `bash scripts/fetch-encoders.sh` once first), MobileNetV2 frozen and MiniLM's top two
/// layers fine-tuned, with heads on their cached features. `--small` trains the small model of
/// www/model-small instead (MobileNetV2 frozen beside a BiLSTM trained from scratch, distilled
/// from heads on the default model's frozen encoders). A folder
/// written next to a `models.json` (www/) is listed in it, so the page offers it.
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
    #[arg(long, value_enum, default_value_t = Branches::Both)]
    modality: Branches,
    /// Picture encoder: a frozen pretrained CNN, or a small CNN trained from scratch.
    #[arg(long, value_enum, default_value_t = ImageEncoder::MobilenetV2)]
    image_encoder: ImageEncoder,
    /// Caption encoder: pretrained all-MiniLM-L6-v2, or Embedding + BiLSTM trained from scratch.
    #[arg(long, value_enum, default_value_t = TextEncoder::MinilmL6)]
    text_encoder: TextEncoder,
    /// The small model: a caption encoder trained from scratch (BiLSTM) beside the picture
    /// encoder (`--image-encoder scratch`: a small CNN from scratch too), with its own presets.
    #[arg(long, conflicts_with = "text_encoder")]
    small: bool,
    /// Most epochs to run; early stopping may end sooner.
    #[arg(long)]
    epochs: Option<usize>,
    /// Pairs per training step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam learning rate of the heads and scratch encoders.
    #[arg(long)]
    lr: Option<f64>,
    /// Seed for the split, initialisation, shuffling and augmentation.
    #[arg(long)]
    seed: Option<u64>,
    /// Share of each class held out for validation.
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Train on a stratified subset of this many labelled pairs (quick runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Cross-validate over K stratified folds of every labelled pair (mean ± sd of each
    /// score), then train the model on all of them for the epoch count the folds chose.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u16).range(2..))]
    cv: Option<u16>,
    /// Epochs without a better validation score before stopping.
    #[arg(long)]
    patience: Option<usize>,
    /// Validation score that picks the epoch to keep.
    #[arg(long, value_enum)]
    select: Option<Select>,
    /// Class weights = (majority count / class count)^power; 0 turns weighting off.
    #[arg(long)]
    class_weight_power: Option<f64>,
    /// Largest WordPiece vocabulary to learn from the training captions (scratch text encoder).
    #[arg(long, default_value_t = presets::SMALL_VOCAB)]
    vocab_size: usize,
    /// Tokens kept per caption (scratch text encoder; MiniLM keeps 128).
    #[arg(long, default_value_t = presets::SMALL_MAX_LEN)]
    max_len: usize,
    /// Side of the square picture the CNN sees [default: 224 for the pretrained CNNs
    /// (resized to 8/7 of it first, 256), 32 for the scratch CNN].
    #[arg(long)]
    image_size: Option<usize>,
    /// Spell emoji out as their names before tokenising ("😭" → "loudly crying face").
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    emoji_names: bool,
    /// How the two branches are combined: an MLP over their features, or a linear layer over
    /// their heads' class scores (late fusion).
    #[arg(long, value_enum, default_value_t = FusionArg::Features)]
    fusion: FusionArg,
    /// Sets of heads trained side by side on the same encoder features, their probabilities
    /// averaged (an ensemble; each set is a few hundred kilobytes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    heads: u16,
    /// Dropout on each branch's features [default: 0.3].
    #[arg(long)]
    dropout: Option<f64>,
    /// Share of caption tokens hidden behind [UNK] in each training batch.
    #[arg(long)]
    word_dropout: Option<f64>,
    /// Weight of each branch's own loss next to the fused loss (modality both).
    #[arg(long)]
    branch_loss_weight: Option<f64>,
    /// Distil the model from a teacher (heads on frozen MobileNetV2 and caption features,
    /// fitted on the same training pairs, each cross-validation fold its own): the share of
    /// each labelled pair's target that is the teacher's probabilities; the pairs of
    /// test_without_label.txt are trained on with the teacher's alone. 0 turns it off (as
    /// it is for `--small --image-encoder scratch`); the small model and the fine-tuned
    /// default model can be distilled
    #[arg(long)]
    distil: Option<f64>,
    /// The caption encoder under the distillation teacher's heads: the default model's MiniLM,
    /// or all-mpnet-base-v2 (stronger, native only; `bash scripts/fetch-encoders.sh --teacher`
    /// fetches it)
    #[arg(long, value_enum)]
    teacher: Option<Teacher>,
    /// Fine-tune this many of MiniLM's top layers along with the heads; 0 keeps every encoder
    /// frozen, so retraining runs on cached features alone and takes seconds.
    #[arg(long)]
    finetune_layers: Option<usize>,
    /// Adam learning rate of the fine-tuned MiniLM layers.
    #[arg(long)]
    finetune_lr: Option<f64>,
    /// Fine-tune this many of the picture encoder's top layers along with the heads (1: its
    /// 1x1 head conv; 2 to 4: that and the inverted residual blocks below it), on cached
    /// activations of the blocks below, mirrored at random; 0 keeps it frozen.
    #[arg(long)]
    finetune_image_layers: Option<usize>,
    /// Adam learning rate of the fine-tuned picture layers.
    #[arg(long)]
    finetune_image_lr: Option<f64>,
    /// Measure mirror test-time augmentation (with --finetune-image-layers): evaluation, and so
    /// cross-validation, averages each picture and its mirror image. The classifier does not:
    /// the folder written is the model without it.
    #[arg(long)]
    mirror_tta: bool,
    /// How the model folder stores the weights: f32, f16 or int8 (the caption encoder's and
    /// the heads' matrices in 8 bits, a scale per block of 32 values), then parts stored
    /// otherwise: `int8,word-embeddings=int4/128,pointwise=int8` (parts: word-embeddings,
    /// text-layers, matrices, pointwise, depthwise, stem; precisions: f32, f16, int8, int4,
    /// the last two with a block of up to 8, 16, 32 (the default), 64 or 128 values after a
    /// slash). The model computes in f32 either way.
    #[arg(long, value_name = "PLAN")]
    weights: Option<WeightPlan>,
    /// With --cv: parts to store smaller, tried in turn on top of --weights
    /// (`word-embeddings=int4,pointwise=int8`); each is kept only where the folds' models,
    /// written so and classified end to end, lose at most 0.3 points of accuracy and 0.5 of
    /// macro-F1 against f32 (metrics.json's `precision` lists every plan tried). The presets
    /// try theirs unless --weights is given.
    #[arg(long, value_name = "PART=PRECISION", value_delimiter = ',')]
    weights_try: Option<Vec<Choice>>,
    /// Folder of the pretrained encoders' original files (scripts/fetch-encoders.sh).
    #[arg(long, env = "MVSA_ENCODERS", default_value_os_t = cli::cache_dir("encoders"))]
    encoders: PathBuf,
    /// Folder of the frozen encoders' feature cache.
    #[arg(long, env = "MVSA_FEATURES", default_value_os_t = cli::cache_dir("features"))]
    feature_cache: PathBuf,
    /// Train nothing: rewrite this model folder's config.json in the current format, redraw
    /// its plots from its metrics.json, and list the folder in the models.json beside it
    /// (created if missing).
    #[arg(long, value_name = "FOLDER", exclusive = true)]
    register: Option<PathBuf>,
    /// No progress bars or per-epoch lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Branches {
    Both,
    Image,
    Text,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ImageEncoder {
    MobilenetV2,
    EfficientnetLite0,
    Scratch,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TextEncoder {
    MinilmL6,
    Scratch,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FusionArg {
    Features,
    Scores,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Teacher {
    Minilm,
    Mpnet,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Select {
    Accuracy,
    MacroF1,
}

fn main() -> ExitCode {
    let command = Args::command().after_help(presets_help());
    let args = match Args::from_arg_matches(&command.get_matches()) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    cli::run(|| run(args))
}

fn run(args: Args) -> Result<()> {
    if let Some(dir) = &args.register {
        listing::upgrade(dir)?;
        report::draw(dir, &MetricsFile::read(dir)?)?;
        let manifest = listing::manifest_beside(dir);
        listing::register(dir, &manifest)?;
        println!("{} listed in {}", dir.display(), manifest.display());
        return Ok(());
    }
    let encoders = EncoderFiles::new(&args.encoders);
    let model = model_config(&args, &encoders)?;
    let options = options(&args, &model);
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.small {
            "www/model-small"
        } else {
            "www/model"
        })
    });
    let (bars, quiet) = (Bars::new(), Quiet);
    let progress: &dyn Progress = if args.quiet { &quiet } else { &bars };
    let trainer = Trainer {
        config: TrainingConfig { model, options },
        encoders,
        feature_cache: args.feature_cache.clone(),
        device: Device::flex(),
        progress,
    };
    let metrics = trainer.run(&args.data, &out)?;
    summarise(&metrics);
    println!("model folder written to {}", out.display());
    Ok(())
}

/// The architecture the flags ask for (MiniLM's shape read from its own config.json).
fn model_config(args: &Args, encoders: &EncoderFiles) -> Result<ModelConfig> {
    let text = match args.small {
        true => TextEncoder::Scratch,
        false => args.text_encoder,
    };
    let with_image = matches!(args.modality, Branches::Both | Branches::Image);
    let with_text = matches!(args.modality, Branches::Both | Branches::Text);
    let image = with_image.then(|| image_branch(args.image_encoder, args.image_size));
    let text = match (with_text, text) {
        (false, _) => None,
        (true, TextEncoder::MinilmL6) => Some(TextBranchConfig::minilm(encoders.minilm_config()?)),
        (true, TextEncoder::Scratch) => {
            Some(TextBranchConfig::scratch(args.vocab_size, args.max_len))
        }
    };
    let mut config = ModelConfig::new(image, text);
    if let Some(text) = config.text.as_mut() {
        text.preprocess.emoji_names = args.emoji_names;
    }
    config.heads = args.heads.into();
    config.fusion = match args.fusion {
        FusionArg::Features => Fusion::Features,
        FusionArg::Scores => Fusion::Scores,
    };
    if let Some(dropout) = args.dropout {
        config.dropout = dropout;
    }
    Ok(config)
}

/// The picture branch of `encoder`, at `size` px if given (a pretrained CNN's picture is first
/// resized to 8/7 of it, as 256 is to ImageNet's 224).
fn image_branch(encoder: ImageEncoder, size: Option<usize>) -> ImageBranchConfig {
    let mut branch = match encoder {
        ImageEncoder::MobilenetV2 => ImageBranchConfig::mobilenet_v2(),
        ImageEncoder::EfficientnetLite0 => ImageBranchConfig::efficientnet_lite0(),
        ImageEncoder::Scratch => {
            return ImageBranchConfig::scratch(size.unwrap_or(presets::SCRATCH_IMAGE_SIZE));
        }
    };
    if let Some(size) = size {
        branch.preprocess.size = size;
        branch.preprocess.resize = (size * 8).div_ceil(7);
    }
    branch
}

/// The preset for the model, with what the flags override.
fn options(args: &Args, model: &ModelConfig) -> TrainingOptions {
    let image_layers = args.finetune_image_layers.unwrap_or(0);
    let preset = TrainingOptions::preset(model, args.finetune_layers, image_layers);
    TrainingOptions {
        epochs: args.epochs.unwrap_or(preset.epochs),
        batch_size: args.batch_size.unwrap_or(preset.batch_size),
        lr: args.lr.unwrap_or(preset.lr),
        finetune_layers: args.finetune_layers.unwrap_or(preset.finetune_layers),
        finetune_lr: args.finetune_lr.unwrap_or(preset.finetune_lr),
        finetune_image_layers: (args.finetune_image_layers).unwrap_or(preset.finetune_image_layers),
        finetune_image_lr: args.finetune_image_lr.unwrap_or(preset.finetune_image_lr),
        mirror_tta: args.mirror_tta,
        seed: args.seed.unwrap_or(preset.seed),
        val_fraction: args.val_fraction.unwrap_or(preset.val_fraction),
        limit: args.limit.or(preset.limit),
        cv: args.cv.map(usize::from).or(preset.cv),
        patience: args.patience.unwrap_or(preset.patience),
        select: match args.select {
            Some(Select::Accuracy) => Selection::Accuracy,
            Some(Select::MacroF1) => Selection::MacroF1,
            None => preset.select,
        },
        class_weight_power: args.class_weight_power.unwrap_or(preset.class_weight_power),
        branch_loss_weight: args.branch_loss_weight.unwrap_or(preset.branch_loss_weight),
        word_dropout: args.word_dropout.unwrap_or(preset.word_dropout),
        distil: args.distil.unwrap_or(preset.distil),
        teacher: match args.teacher {
            Some(Teacher::Minilm) => TeacherText::Minilm,
            Some(Teacher::Mpnet) => TeacherText::Mpnet,
            None => preset.teacher,
        },
        weights: args.weights.clone().unwrap_or(preset.weights),
        // A plan given alone is the plan asked for: the preset's tries go with its own plan.
        weights_try: match (&args.weights, &args.weights_try) {
            (_, Some(tried)) => tried.clone(),
            (Some(_), None) => Vec::new(),
            (None, None) => preset.weights_try,
        },
    }
}

fn summarise(metrics: &MetricsFile) {
    scores(metrics);
    println!("{}", took(metrics));
}

/// How long the run took, and where the time went: what a user weighs against a run's gain
/// (cross-validation multiplies the cost; cached features make a rerun cheap), without
/// opening `metrics.json`.
fn took(metrics: &MetricsFile) -> String {
    let duration = |seconds: f64| match seconds.round() < 120.0 {
        true => format!("{seconds:.0} s"),
        false => format!("{:.1} min", seconds / 60.0),
    };
    let mut parts = Vec::new();
    if let Some(f) = &metrics.features {
        let computed = f.image_computed + f.text_computed;
        if computed > 0 {
            parts.push(format!(
                "{} computing encoder features",
                duration(f.image_seconds + f.text_seconds)
            ));
        }
    }
    if let Some(cv) = &metrics.cross_validation {
        parts.push(format!("{} cross-validating", duration(cv.seconds)));
    }
    let total = duration(metrics.training_seconds);
    match parts.is_empty() {
        true => format!("took {total}"),
        false => format!("took {total} ({})", parts.join(", ")),
    }
}

/// The headline scores: the cross-validated estimate where there is one (the model's expected
/// accuracy), else the validation split's.
fn scores(metrics: &MetricsFile) {
    if let Some(cv) = &metrics.cross_validation {
        let line = |name: &str, s: &mvsa_sentiment::training::cv::Spread| println!("{name}: {s}");
        println!(
            "{}-fold cross-validation over {} pairs, {} epochs (then trained on all of them):",
            cv.folds, cv.pairs, cv.epochs
        );
        line("  fused", &cv.fused);
        for (name, s) in [("  image branch", &cv.image), ("  text branch", &cv.text)] {
            if let Some(s) = s {
                line(name, s);
            }
        }
        // The folds as the folder stores them, end to end (the study's row of that plan).
        let written = (metrics.weights.as_ref())
            .and_then(|w| metrics.precision.iter().rfind(|row| &row.weights == w));
        if let Some(row) = written {
            println!(
                "  written ({}, {:.2} MB), end to end: accuracy {:.4}, macro-F1 {:.4}",
                row.weights,
                row.bytes as f64 / 1e6,
                row.accuracy,
                row.macro_f1
            );
        }
        return;
    }
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
}

/// The presets' values, for `--help` (they are what an option left out takes).
fn presets_help() -> String {
    let columns = [
        ("pretrained", TrainingOptions::finetune()),
        ("--finetune-layers 0", TrainingOptions::heads_only()),
        ("--small", TrainingOptions::small()),
    ];
    let row = |name: &str, value: fn(&TrainingOptions) -> String| {
        let values: Vec<String> = columns
            .iter()
            .map(|(_, o)| format!("{:>20}", value(o)))
            .collect();
        format!("  {name:<24}{}\n", values.concat())
    };
    let mut help = String::from("Presets (an option left out takes its preset's value):\n");
    let heads: Vec<String> = columns.iter().map(|(n, _)| format!("{n:>20}")).collect();
    help += &format!("  {:<24}{}\n", "", heads.concat());
    help += &row("--epochs", |o| o.epochs.to_string());
    help += &row("--patience", |o| o.patience.to_string());
    help += &row("--batch-size", |o| o.batch_size.to_string());
    help += &row("--lr", |o| o.lr.to_string());
    help += &row("--finetune-layers", |o| o.finetune_layers.to_string());
    help += &row("--finetune-lr", |o| o.finetune_lr.to_string());
    help += &row("--finetune-image-layers", |o| {
        o.finetune_image_layers.to_string()
    });
    help += &row("--finetune-image-lr", |o| o.finetune_image_lr.to_string());
    help += &row("--seed", |o| o.seed.to_string());
    help += &row("--val-fraction", |o| o.val_fraction.to_string());
    help += &row("--select", |o| match o.select {
        Selection::Accuracy => "accuracy".into(),
        Selection::MacroF1 => "macro-f1".into(),
    });
    help += &row("--class-weight-power", |o| o.class_weight_power.to_string());
    help += &row("--branch-loss-weight", |o| o.branch_loss_weight.to_string());
    help += &row("--word-dropout", |o| o.word_dropout.to_string());
    help += &row("--distil", |o| o.distil.to_string());
    help += &row("--teacher", |o| format!("{:?}", o.teacher).to_lowercase());
    help += &row("--weights", |o| o.weights.to_string());
    // Too long for a column: a line each.
    help += "  --weights-try (in turn, with --cv):\n";
    for (name, o) in &columns {
        let tried: Vec<String> = o.weights_try.iter().map(|c| c.to_string()).collect();
        help += &format!("    {name:<22}{}\n", tried.join(","));
    }
    help
}
