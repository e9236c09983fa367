//! What the frozen pretrained encoders compute for every pair: picture and caption features,
//! and MiniLM's hidden states below the fine-tuned layers (a row per token), all kept in the
//! on-disk [`FeatureCache`], so a retrain computes only what is new.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, anyhow};
use burn::prelude::*;
use image::RgbImage;
use mvsa_model::config::{ImageBranchConfig, TextBranchConfig};
use mvsa_model::model::{
    Encoder, ImageEncoder, MiniLm, MobileCnn, TextEncoder, TokenBatch, image_batch,
};
use mvsa_model::preprocess::{ImagePreprocessor, TextPreprocessor, Tokens};

use crate::data::Sample;
use crate::features::FeatureCache;
use crate::mpnet::MpnetEncoder;
use crate::progress::Progress;
use crate::training::finetune::Activations;

/// Pairs the encoders see at a time.
const CHUNK: usize = 32;

/// Rows computed (not found in the cache) and the seconds that took.
pub struct Computed<R = Vec<f32>> {
    pub rows: Vec<R>,
    pub computed: usize,
    pub seconds: f64,
}

/// The picture encoder's features of every sample (stored pictures, centre crop).
pub fn image_features(
    encoder: &ImageEncoder,
    branch: &ImageBranchConfig,
    samples: &[Sample],
    cache_dir: &Path,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Computed> {
    let pre = ImagePreprocessor::new(branch.preprocess.clone());
    let setting = serde_json::to_string(branch)?;
    let stored = |i: usize| stored_picture(&samples[i]);
    let keys = picture_keys(samples, &setting)?;
    let width = ImageEncoder::features(&branch.encoder);
    let cache = FeatureCache::open(cache_dir, branch.encoder.name(), width);
    cached(cache, "image features", &keys, progress, |chunk| {
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * pre.config().size.pow(2));
        for &i in chunk {
            pixels.extend(pre.center(stored(i)?));
        }
        let images = image_batch(pixels, chunk.len(), pre.config().size, device);
        host_rows(encoder.encode(images))
    })
}

/// `lower`'s activations of every sample's picture, its centre crop and its mirror image: what
/// fine-tuning the picture encoder's top layers reads.
pub fn picture_activations(
    lower: &MobileCnn,
    branch: &ImageBranchConfig,
    samples: &[Sample],
    cache_dir: &Path,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Computed<Activations>> {
    let run = |mirrored| {
        image_activations(
            lower, branch, samples, mirrored, cache_dir, device, progress,
        )
    };
    let ((centre, shape), (mirrored, _)) = (run(false)?, run(true)?);
    let both = centre.rows.into_iter().zip(mirrored.rows);
    let rows = both.map(|(centre, mirrored)| Activations {
        shape,
        centre,
        mirrored: Some(mirrored),
    });
    Ok(Computed {
        rows: rows.collect(),
        computed: centre.computed + mirrored.computed,
        seconds: centre.seconds + mirrored.seconds,
    })
}

/// `lower`'s activations (`[c, h, w]`, row-major) of every sample's picture, as the centre crop
/// or its mirror image gives them.
fn image_activations(
    lower: &MobileCnn,
    branch: &ImageBranchConfig,
    samples: &[Sample],
    mirrored: bool,
    cache_dir: &Path,
    device: &Device,
    progress: &dyn Progress,
) -> Result<(Computed, [usize; 3])> {
    let pre = ImagePreprocessor::new(branch.preprocess.clone());
    let (blocks, size) = (lower.blocks(), pre.config().size);
    let setting = format!(
        "{} blocks {blocks} mirrored {mirrored}",
        serde_json::to_string(branch)?
    );
    // The shape of the map: one blank picture through the blocks tells.
    let probe = lower.activations(Tensor::zeros([1, 3, size, size], device));
    let [_, c, h, w] = probe.dims();
    let stored = |i: usize| stored_picture(&samples[i]);
    let keys = picture_keys(samples, &setting)?;
    let side = if mirrored { "-mirrored" } else { "" };
    let name = format!("{}-blocks{blocks}{side}", branch.encoder.name());
    // Rows `c` wide, `h * w` of them an entry: the cache only needs the entry's length.
    let cache = FeatureCache::open(cache_dir, &name, c);
    let what = format!("picture activations{}", side.replace('-', ", "));
    let margin = pre.margin() / 2;
    let computed = cached(cache, &what, &keys, progress, |chunk| {
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * size * size);
        for &i in chunk {
            pixels.extend(pre.crop(stored(i)?, margin, margin, mirrored));
        }
        let maps = lower.activations(image_batch(pixels, chunk.len(), size, device));
        let values = maps
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow!("reading activations: {e:?}"))?;
        Ok(values.chunks(c * h * w).map(<[f32]>::to_vec).collect())
    })?;
    Ok((computed, [c, h, w]))
}

/// The caption encoder's features of every sample.
pub fn text_features(
    encoder: &TextEncoder,
    branch: &TextBranchConfig,
    text: &TextPreprocessor,
    samples: &[Sample],
    cache_dir: &Path,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Computed> {
    let setting = serde_json::to_string(branch)?;
    let keys = caption_keys(samples.iter(), &setting);
    let width = TextEncoder::features(&branch.encoder);
    let cache = FeatureCache::open(cache_dir, branch.encoder.name(), width);
    cached(cache, "text features", &keys, progress, |chunk| {
        let captions: Vec<&str> = chunk.iter().map(|&i| samples[i].caption.as_str()).collect();
        let tokens = tokens_of(text, &captions)?;
        host_rows(encoder.encode(batch_of(text, &tokens, device)))
    })
}

/// all-mpnet-base-v2's sentence embeddings of every sample's caption (a teacher's).
pub fn mpnet_features(
    encoder: &MpnetEncoder,
    samples: &[Sample],
    cache_dir: &Path,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Computed> {
    const NAME: &str = "all-mpnet-base-v2";
    let MpnetEncoder {
        model,
        branch,
        text,
    } = encoder;
    let setting = format!("{NAME} {}", serde_json::to_string(branch)?);
    // 110 M parameters: captions of similar length go together, so little of the compute is
    // padding (rows come back in the samples' order below).
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by_key(|&i| samples[i].caption.len());
    let keys = caption_keys(order.iter().map(|&i| &samples[i]), &setting);
    let width = TextEncoder::features(&branch.encoder);
    let cache = FeatureCache::open(cache_dir, NAME, width);
    let what = "teacher's caption features";
    let computed = cached(cache, what, &keys, progress, |chunk| {
        let captions: Vec<&str> = (chunk.iter())
            .map(|&j| samples[order[j]].caption.as_str())
            .collect();
        let tokens = tokens_of(text, &captions)?;
        let rows = text.rows(&tokens.iter().collect::<Vec<_>>());
        host_rows(model.encode(&rows, device))
    })?;
    let mut rows = vec![Vec::new(); samples.len()];
    for (&i, row) in order.iter().zip(computed.rows) {
        rows[i] = row;
    }
    Ok(Computed { rows, ..computed })
}

/// MiniLM's hidden states after `lower`'s layers for every caption, each `[tokens, hidden]`
/// row-major (padding dropped); from the feature cache where it has them.
pub fn lower_states(
    lower: &MiniLm,
    branch: &TextBranchConfig,
    text: &TextPreprocessor,
    samples: &[Sample],
    cache_dir: &Path,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Computed> {
    let layers = lower.layers();
    let setting = format!("{} lower {layers}", serde_json::to_string(branch)?);
    let keys = caption_keys(samples.iter(), &setting);
    let hidden = TextEncoder::features(&branch.encoder);
    let name = format!("{}-states{layers}", branch.encoder.name());
    let cache = FeatureCache::open(cache_dir, &name, hidden);
    cached(cache, "caption states", &keys, progress, |chunk| {
        let captions: Vec<&str> = chunk.iter().map(|&i| samples[i].caption.as_str()).collect();
        let tokens = tokens_of(text, &captions)?;
        let states = lower.hidden_states(batch_of(text, &tokens, device)).states;
        let [_, width, hidden] = states.dims();
        let values = states
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow!("reading states: {e:?}"))?;
        let rows = tokens.iter().enumerate();
        Ok(rows
            .map(|(i, t)| values[i * width * hidden..][..t.len() * hidden].to_vec())
            .collect())
    })
}

/// A sample's picture as the data reader stored it (resized, before the crop).
fn stored_picture(sample: &Sample) -> Result<&RgbImage> {
    let guid = &sample.guid;
    (sample.image.as_ref()).ok_or_else(|| anyhow!("guid {guid}: the picture was not read"))
}

/// Each sample's cache key: its caption under the encoder's `setting`.
fn caption_keys<'a>(samples: impl Iterator<Item = &'a Sample>, setting: &str) -> Vec<u64> {
    samples
        .map(|s| mvsa_model::fnv1a([setting.as_bytes(), s.caption.as_bytes()]))
        .collect()
}

/// Each sample's cache key: its stored picture under the encoder's `setting`.
fn picture_keys(samples: &[Sample], setting: &str) -> Result<Vec<u64>> {
    samples
        .iter()
        .map(|s| {
            Ok(mvsa_model::fnv1a([
                setting.as_bytes(),
                stored_picture(s)?.as_raw(),
            ]))
        })
        .collect()
}

fn tokens_of(text: &TextPreprocessor, captions: &[&str]) -> Result<Vec<Tokens>> {
    Ok(captions
        .iter()
        .map(|c| text.encode(c))
        .collect::<mvsa_model::Result<_>>()?)
}

fn batch_of(text: &TextPreprocessor, tokens: &[Tokens], device: &Device) -> TokenBatch {
    let rows = text.rows(&tokens.iter().collect::<Vec<_>>());
    TokenBatch::new(rows.ids, rows.mask, rows.shape, device)
}

/// A `[rows, dim]` tensor as one `Vec` per row.
fn host_rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, dim] = t.dims();
    let values = t
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow!("reading features: {e:?}"))?;
    Ok(values.chunks(dim).map(<[f32]>::to_vec).collect())
}

/// One feature row per key: from `cache` where it has the key, else computed by `encode`
/// (given sample indices, a chunk at a time) and added to it.
fn cached(
    mut cache: FeatureCache,
    what: &str,
    keys: &[u64],
    progress: &dyn Progress,
    mut encode: impl FnMut(&[usize]) -> Result<Vec<Vec<f32>>>,
) -> Result<Computed> {
    let todo: Vec<usize> = (0..keys.len())
        .filter(|&i| cache.get(keys[i]).is_none())
        .collect();
    progress.note(&format!(
        "{what} ({}): {} cached, {} to compute",
        cache.path().display(),
        keys.len() - todo.len(),
        todo.len()
    ));
    let started = Instant::now();
    progress.begin(what, todo.len());
    for (n, chunk) in todo.chunks(CHUNK).enumerate() {
        for (&i, row) in chunk.iter().zip(encode(chunk)?) {
            cache.insert(keys[i], row);
        }
        progress.advance(chunk.len(), None);
        // Now and then, so an interrupted first run keeps most of its work.
        if n % 20 == 19 {
            cache.save()?;
        }
    }
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    cache.save()?;
    let rows = keys
        .iter()
        .map(|key| cache.get(*key).map(<[f32]>::to_vec))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| anyhow!("{}: a computed row went missing", cache.path().display()))?;
    Ok(Computed {
        rows,
        computed: todo.len(),
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpnet::{self, Mpnet};
    use crate::progress::Quiet;
    use mvsa_model::config::TextBranchConfig;
    use mvsa_model::preprocess::TextPreprocessor;

    /// `tests/fixtures/tiny-mpnet` behind a tokenizer of its 40 ids: `w0` … `w39`.
    fn tiny_mpnet(device: &Device) -> MpnetEncoder {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-mpnet");
        let shape = mpnet::read_config(&dir.join("config.json")).unwrap();
        let vocab: serde_json::Map<String, serde_json::Value> =
            (0..40).map(|i| (format!("w{i}"), i.into())).collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w3"}
        });
        let tokenizer = tokenizers::Tokenizer::from_bytes(json.to_string()).unwrap();
        let mut branch = TextBranchConfig::minilm(shape.clone());
        branch.preprocess.pad_id = 1;
        let text = TextPreprocessor::new(tokenizer, branch.clone()).unwrap();
        let model = Mpnet::new(&shape, 1, device).load(&dir.join("model.safetensors"));
        let model = model.unwrap();
        MpnetEncoder {
            model,
            branch,
            text,
        }
    }

    #[test]
    fn teacher_caption_features_come_back_in_the_samples_order_and_are_cached() {
        let device = Device::flex();
        let mpnet = tiny_mpnet(&device);
        // Batched by length (1, 3, 6 and 9 words: not the samples' order), padded.
        let captions = [
            "w5 w9 w13 w22 w31 w7",
            "w17",
            "w30 w21 w12",
            "w8 w9 w8 w9 w8 w9 w8 w9 w8",
        ];
        let samples: Vec<Sample> = (captions.iter().enumerate())
            .map(|(i, c)| Sample {
                guid: i.to_string(),
                image: None,
                caption: c.to_string(),
                label: 0,
            })
            .collect();
        let cache = tempfile::tempdir().unwrap();
        let run = || mpnet_features(&mpnet, &samples, cache.path(), &device, &Quiet).unwrap();
        let all = run();
        assert_eq!(all.computed, 4);
        assert!(all.rows.iter().all(|row| row.len() == 8));
        for (caption, row) in captions.iter().zip(&all.rows) {
            let tokens = tokens_of(&mpnet.text, &[caption]).unwrap();
            let alone = mpnet.text.rows(&tokens.iter().collect::<Vec<_>>());
            let alone = host_rows(mpnet.model.encode(&alone, &device)).unwrap();
            for (a, b) in alone[0].iter().zip(row) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "{caption}: {:?} against {row:?}",
                    alone[0]
                );
            }
        }
        // A second run reads every row from the cache.
        let again = run();
        assert_eq!((again.computed, again.rows), (0, all.rows));
    }
}
