//! `config.json` as the first versions wrote it (no `format` key): one flat `image` and `text`
//! section with every encoder's fields side by side and a `modality`. Read so that model
//! folders trained before format 2 keep loading; never written.

use serde::Deserialize;

use crate::config::{
    ImageBranchConfig, ImageEncoderConfig, ImagePreprocessing, MiniLmConfig, ModelConfig,
    TextBranchConfig, TextEncoderConfig, TextPreprocessing,
};
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Flat {
    labels: Vec<String>,
    modality: String,
    image: FlatImage,
    text: FlatText,
    fusion_hidden: usize,
    dropout: f64,
}

#[derive(Deserialize)]
struct FlatImage {
    /// Absent in the very first configs, which were all from scratch.
    #[serde(default = "scratch")]
    encoder: String,
    size: usize,
    resize: usize,
    mean: [f32; 3],
    std: [f32; 3],
    channels: Vec<usize>,
    max_side: u32,
}

#[derive(Deserialize)]
struct FlatText {
    #[serde(default = "scratch")]
    encoder: String,
    max_len: usize,
    vocab_size: usize,
    pad_id: u32,
    embed_dim: usize,
    hidden: usize,
    max_bytes: usize,
}

fn scratch() -> String {
    "scratch".into()
}

/// The shape of all-MiniLM-L6-v2, which format 1 implied by the encoder's name.
fn all_minilm_l6_v2() -> MiniLmConfig {
    MiniLmConfig {
        vocab_size: 30_522,
        hidden_size: 384,
        num_hidden_layers: 6,
        num_attention_heads: 12,
        intermediate_size: 1536,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
    }
}

pub(super) fn read(value: serde_json::Value) -> Result<ModelConfig> {
    let flat: Flat = serde_json::from_value(value).map_err(|e| Error::Config(e.to_string()))?;
    let (with_image, with_text) = match flat.modality.as_str() {
        "both" => (true, true),
        "image" => (true, false),
        "text" => (false, true),
        other => return Err(Error::Config(format!("unknown modality {other:?}"))),
    };
    let image = with_image.then(|| image(flat.image)).transpose()?;
    let text = with_text.then(|| text(flat.text)).transpose()?;
    Ok(ModelConfig {
        labels: flat.labels,
        image,
        text,
        fusion_hidden: flat.fusion_hidden,
        fusion: Default::default(),
        heads: 1,
        dropout: flat.dropout,
    })
}

fn image(flat: FlatImage) -> Result<ImageBranchConfig> {
    let encoder = match flat.encoder.as_str() {
        "scratch" => ImageEncoderConfig::Scratch {
            channels: flat.channels,
        },
        "mobilenet-v2" => ImageEncoderConfig::MobilenetV2,
        "efficientnet-lite0" => ImageEncoderConfig::EfficientnetLite0,
        other => return Err(Error::Config(format!("unknown image encoder {other:?}"))),
    };
    Ok(ImageBranchConfig {
        encoder,
        preprocess: ImagePreprocessing {
            size: flat.size,
            resize: flat.resize,
            mean: flat.mean,
            std: flat.std,
            max_side: flat.max_side,
        },
    })
}

fn text(flat: FlatText) -> Result<TextBranchConfig> {
    let encoder = match flat.encoder.as_str() {
        "scratch" => TextEncoderConfig::Scratch {
            vocab_size: flat.vocab_size,
            embed_dim: flat.embed_dim,
            hidden: flat.hidden,
        },
        "minilm-l6" => TextEncoderConfig::MinilmL6(all_minilm_l6_v2()),
        other => return Err(Error::Config(format!("unknown text encoder {other:?}"))),
    };
    Ok(TextBranchConfig {
        encoder,
        preprocess: TextPreprocessing {
            max_len: flat.max_len,
            pad_id: flat.pad_id,
            max_bytes: flat.max_bytes,
            // Format 1 predates spelling emoji out: those models were trained without it.
            emoji_names: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::read_config;
    use crate::config::{ImageBranchConfig, Modality, TextBranchConfig};

    /// `www/model/config.json` as the trainer wrote it before format 2.
    const PRETRAINED: &str = r#"{"labels": ["negative", "neutral", "positive"],
        "modality": "both",
        "image": {"encoder": "mobilenet-v2", "size": 224, "resize": 256,
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                  "channels": [], "max_side": 12000},
        "text": {"encoder": "minilm-l6", "max_len": 128, "vocab_size": 30522, "pad_id": 0,
                 "embed_dim": 384, "hidden": 0, "max_bytes": 4096},
        "fusion_hidden": 128, "dropout": 0.3}"#;

    #[test]
    fn format_1_configs_read_as_the_current_ones() {
        let config = read_config(PRETRAINED.as_bytes()).unwrap();
        let mut expected = crate::config::ModelConfig::new(
            Some(ImageBranchConfig::mobilenet_v2()),
            Some(TextBranchConfig::minilm(super::all_minilm_l6_v2())),
        );
        // Trained before emoji were spelled out: they keep being tokenised as they were.
        expected.text.as_mut().unwrap().preprocess.emoji_names = false;
        assert_eq!(config, expected);

        // The first configs had no encoder field: from scratch; `modality` drops a branch.
        let scratch = PRETRAINED
            .replace(r#""encoder": "mobilenet-v2", "#, "")
            .replace(r#""channels": []"#, r#""channels": [16, 32, 64, 128]"#)
            .replace(r#""encoder": "minilm-l6", "#, "")
            .replace(r#""modality": "both""#, r#""modality": "text""#)
            .replace(r#""hidden": 0"#, r#""hidden": 96"#);
        let config = read_config(scratch.as_bytes()).unwrap();
        assert_eq!(config.modality(), Modality::Text);
        assert_eq!(config.text.unwrap().vocab_size(), 30522);
        let odd = PRETRAINED.replace("mobilenet-v2", "resnet-50");
        assert!(read_config(odd.as_bytes()).is_err());
    }
}
