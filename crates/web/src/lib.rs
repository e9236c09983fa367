//! The page's wasm API, hosted in a Web Worker (`www/worker.js`): build a classifier from a model
//! folder's files (the worker downloads them), warm it up, and classify image bytes + a caption
//! with the model crate's preprocessing, model and classifier, the code the native predictor
//! runs. Every call returns `Result`; nothing blocks.
//!
//! Three builds come from this crate: the CPU one (Burn's flex backend, small: what the page
//! loads first); with the `threads` feature, the same on a pool of Web Workers (built with
//! atomics on nightly; the page loads it instead where it is cross-origin isolated); and, with
//! the `webgpu` feature, one that also runs on WebGPU (fetched only where the browser has a
//! hardware adapter).

#[cfg(feature = "webgpu")]
mod webgpu;

use std::collections::HashMap;

use burn::prelude::*;
use js_sys::{Object, Reflect, Uint8Array};
use mvsa_model::folder::{self, ModelFiles};
use mvsa_model::{Classifier, Pair, Prediction};
use serde::Serialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

unsafe extern "C" {
    /// The linker's constructor list (cubecl registers kernels with `inventory`).
    fn __wasm_call_ctors();
}

/// Runs when the module is initialised (tests, which skip start functions, call it first).
#[wasm_bindgen(start)]
pub fn start() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        // Run the constructors once, here. Without an explicit call wasm-ld wraps every export
        // in a call to them ("command" exports), which re-ran CubeCL's registrations on every
        // call into the module (~0.4 ms each; dtolnay/inventory#76, #78).
        unsafe { __wasm_call_ctors() };
        // A Rust panic becomes a console error with its message instead of an opaque trap.
        console_error_panic_hook::set_once();
    });
}

/// Does nothing: the browser benchmark times calls into the module with it.
#[wasm_bindgen]
pub fn noop() {}

/// Starts the CPU kernels' pool of `n` Web Workers (a promise; the threaded build only): call
/// once, before the first classifier is built.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// How many threads the CPU kernels run on: 1 in the single-threaded build, the pool's size in
/// the threaded one once `initThreadPool` has started it.
#[wasm_bindgen]
pub fn threads() -> usize {
    mvsa_model::model::cpu_threads()
}

/// Whether this build can run on WebGPU.
#[wasm_bindgen(js_name = hasWebGpu)]
pub fn has_webgpu() -> bool {
    cfg!(feature = "webgpu")
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Milliseconds from the page's (or worker's) clock.
fn now_ms() -> f64 {
    let performance = Reflect::get(&js_sys::global(), &"performance".into()).ok();
    let now = performance.as_ref().and_then(|p| {
        let now: js_sys::Function = Reflect::get(p, &"now".into()).ok()?.dyn_into().ok()?;
        now.call0(p).ok()?.as_f64()
    });
    now.unwrap_or_else(js_sys::Date::now)
}

/// The device `backend` names: `"cpu"`, or `"webgpu"` in the WebGPU build.
async fn device(backend: &str) -> Result<Device, JsError> {
    match backend {
        "cpu" => Ok(Device::flex()),
        #[cfg(feature = "webgpu")]
        "webgpu" => webgpu::device().await,
        #[cfg(not(feature = "webgpu"))]
        "webgpu" => Err(js_err(
            "this build runs on the CPU only; WebGPU is in pkg/webgpu",
        )),
        other => Err(js_err(format!(
            "unknown backend {other:?}; use cpu or webgpu"
        ))),
    }
}

/// What `classify` returns to JavaScript.
#[derive(Serialize)]
struct WebPrediction {
    #[serde(flatten)]
    prediction: Prediction,
    backend: String,
    ms: f64,
}

/// What `warmUp` measured, in milliseconds.
#[derive(Serialize)]
struct WarmUp {
    first_ms: f64,
    warm_ms: f64,
}

/// How long each stage of one classification took, in milliseconds.
#[derive(Serialize)]
struct Profile {
    preprocess: f64,
    image_encoder: f64,
    text_encoder: f64,
    heads: f64,
}

/// What the model accepts, from its config: the page checks input against it as it is given.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Limits {
    max_caption_bytes: Option<usize>,
    max_side: Option<u32>,
    max_file_bytes: usize,
    formats: &'static str,
}

/// A picture's size, as `inspect` found it.
#[derive(Serialize)]
struct Inspected {
    width: u32,
    height: u32,
}

/// A loaded model folder, bound to one backend.
#[wasm_bindgen]
pub struct WebClassifier {
    classifier: Classifier,
    backend: String,
}

#[wasm_bindgen]
impl WebClassifier {
    /// Build from a model folder's files: `files` maps each file name (`config.json`, …) to
    /// its bytes, as the page downloaded the files its manifest lists.
    pub async fn create(files: Object, backend: String) -> Result<WebClassifier, JsError> {
        let bytes = |name: &str| -> Option<Vec<u8>> {
            let value = Reflect::get(&files, &name.into()).ok()?;
            value.dyn_ref::<Uint8Array>().map(Uint8Array::to_vec)
        };
        let missing = |name: &str| js_err(format!("the model folder has no {name}"));
        let config = bytes(folder::CONFIG).ok_or_else(|| missing(folder::CONFIG))?;
        let weights = bytes(folder::WEIGHTS).ok_or_else(|| missing(folder::WEIGHTS))?;
        Self::from_bytes(config, bytes(folder::TOKENIZER), weights, backend).await
    }

    /// Build from the folder's files' bytes (`tokenizer` may be absent for a picture-only
    /// model).
    #[wasm_bindgen(js_name = fromBytes)]
    pub async fn from_bytes(
        config: Vec<u8>,
        tokenizer: Option<Vec<u8>>,
        weights: Vec<u8>,
        backend: String,
    ) -> Result<WebClassifier, JsError> {
        let device = device(&backend).await?;
        let files = ModelFiles::from_bytes(&config, tokenizer, weights).map_err(js_err)?;
        let mut classifier = Classifier::new(files, &device).map_err(js_err)?;
        if backend == "webgpu" {
            classifier = classifier.with_length_buckets();
        }
        Ok(WebClassifier {
            classifier,
            backend,
        })
    }

    /// `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Class names in output order.
    #[wasm_bindgen(getter)]
    pub fn labels(&self) -> Vec<String> {
        self.classifier.config().labels.clone()
    }

    /// `{maxCaptionBytes, maxSide, maxFileBytes, formats}`: the longest caption in UTF-8 bytes,
    /// the largest picture side (absent for a model without that branch), the largest picture
    /// file, and the picture formats read.
    #[wasm_bindgen(getter)]
    pub fn limits(&self) -> Result<JsValue, JsError> {
        let config = self.classifier.config();
        let limits = Limits {
            max_caption_bytes: config.text.as_ref().map(|t| t.preprocess.max_bytes),
            max_side: config.image.as_ref().map(|i| i.preprocess.max_side),
            max_file_bytes: mvsa_model::preprocess::MAX_FILE_BYTES,
            formats: mvsa_model::preprocess::FORMATS,
        };
        serde_wasm_bindgen::to_value(&limits).map_err(js_err)
    }

    /// Decode a picture the way `classify` will, without running the model: `{width,
    /// height}`, or an error in plain words (not a picture, damaged, too large). The page
    /// checks a file with it as soon as it is chosen.
    pub fn inspect(&self, image: &[u8]) -> Result<JsValue, JsError> {
        let pre = (self.classifier.image_preprocessor())
            .ok_or_else(|| js_err("this model reads captions only"))?;
        let (width, height) = pre.dimensions(image).map_err(js_err)?;
        // Decoded too (possibly reduced, and then dropped): damage shows only there.
        pre.decode(image).map_err(js_err)?;
        serde_wasm_bindgen::to_value(&Inspected { width, height }).map_err(js_err)
    }

    /// Why the model decided (occlusion): `{labels, fused, words: [{before, word, effect}],
    /// picture: {width, height, crop, rows, cols, cells}}`, each effect the fall in each
    /// label's fused probability when that word, or that cell of a `grid` x `grid` split of
    /// the picture, is hidden.
    pub async fn explain(
        &self,
        image: Option<Vec<u8>>,
        caption: Option<String>,
        grid: usize,
    ) -> Result<JsValue, JsError> {
        let pair = Pair {
            image: image.as_deref(),
            caption: caption.as_deref(),
        };
        let occlusion = self.classifier.occlude(pair, grid).map_err(js_err)?;
        let explanation = occlusion.read_async().await.map_err(js_err)?;
        explanation
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(js_err)
    }

    /// Run synthetic inputs through every kernel a classification can need (on WebGPU, each
    /// caption length bucket once: shader compilation happens here, not on the user's first
    /// classification), then time two more warm classifications. Resolves to
    /// `{first_ms, warm_ms}`: the warm-up itself, and the faster warm run (what the page
    /// compares backends by).
    #[wasm_bindgen(js_name = warmUp)]
    pub async fn warm_up(&self) -> Result<JsValue, JsError> {
        let started = now_ms();
        let inputs = self.classifier.warm_up_inputs().map_err(js_err)?;
        for input in &inputs {
            let batch = std::slice::from_ref(input);
            self.classifier.run_async(batch).await.map_err(js_err)?;
        }
        let first_ms = now_ms() - started;
        let mut warm_ms = f64::INFINITY;
        for _ in 0..2 {
            let started = now_ms();
            let batch = &inputs[..inputs.len().min(1)];
            self.classifier.run_async(batch).await.map_err(js_err)?;
            warm_ms = warm_ms.min(now_ms() - started);
        }
        let warm = WarmUp { first_ms, warm_ms };
        serde_wasm_bindgen::to_value(&warm).map_err(js_err)
    }

    /// Classify a picture (JPEG/PNG bytes) and/or a caption. Resolves to `{label, labels,
    /// fused, image, text, backend, ms}`; rejects with a message on bad input.
    pub async fn classify(
        &self,
        image: Option<Vec<u8>>,
        caption: Option<String>,
    ) -> Result<JsValue, JsError> {
        let started = now_ms();
        let pair = Pair {
            image: image.as_deref(),
            caption: caption.as_deref(),
        };
        let predictions = self.classifier.classify_async(&[pair]).await;
        let prediction = predictions
            .map_err(js_err)?
            .pop()
            .ok_or_else(|| js_err("no prediction came back"))?;
        let result = WebPrediction {
            prediction,
            backend: self.backend.clone(),
            ms: now_ms() - started,
        };
        // Plain objects (not `Map`s) for the flattened prediction.
        result
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(js_err)
    }

    /// Classify one pair of a folder from its files' bytes, under the model crate's rule for
    /// folders ([`Classifier::prepare_any`]): the caption decoded as the trainer reads the data
    /// set, an empty one leaving the picture alone, an unreadable picture the caption alone,
    /// each said in `notes`. Resolves to `classify`'s answer plus `caption`, the decoded text.
    #[wasm_bindgen(js_name = classifyPair)]
    pub async fn classify_pair(
        &self,
        image: Option<Vec<u8>>,
        caption: Option<Vec<u8>>,
    ) -> Result<JsValue, JsError> {
        let started = now_ms();
        let text = caption
            .as_deref()
            .map(mvsa_model::preprocess::decode_caption);
        let pair = Pair {
            image: image.as_deref(),
            caption: text.as_deref(),
        };
        let prepared = self.classifier.prepare_any(pair).map_err(js_err)?;
        let prediction = (self
            .classifier
            .run_async(std::slice::from_ref(&prepared))
            .await)
            .map_err(js_err)?
            .pop()
            .ok_or_else(|| js_err("no prediction came back"))?;
        #[derive(Serialize)]
        struct PairAnswer {
            #[serde(flatten)]
            answer: WebPrediction,
            caption: String,
        }
        let answer = PairAnswer {
            answer: WebPrediction {
                prediction,
                backend: self.backend.clone(),
                ms: now_ms() - started,
            },
            caption: text.unwrap_or_default(),
        };
        answer
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(js_err)
    }

    /// Classify one pair stage by stage, reading each stage's result back before the next
    /// starts: `{preprocess, image_encoder, text_encoder, heads}` in milliseconds (for the
    /// benchmark; `classify` does not wait between stages).
    pub async fn profile(
        &self,
        image: Option<Vec<u8>>,
        caption: Option<String>,
    ) -> Result<JsValue, JsError> {
        let mut clock = now_ms();
        let mut lap = || {
            let now = now_ms();
            let elapsed = now - clock;
            clock = now;
            elapsed
        };
        let pair = Pair {
            image: image.as_deref(),
            caption: caption.as_deref(),
        };
        let prepared = self.classifier.prepare(pair).map_err(js_err)?;
        let preprocess = lap();
        let (images, tokens) = self.classifier.inputs(&[&prepared]);
        let model = self.classifier.model();
        let image_features = sync(model.encode(images, None).0).await?;
        let image_encoder = lap();
        let text_features = sync(model.encode(None, tokens).1).await?;
        let text_encoder = lap();
        let output = model.heads(image_features, text_features).map_err(js_err)?;
        output.probabilities().read_async().await.map_err(js_err)?;
        let heads = lap();
        let profile = Profile {
            preprocess,
            image_encoder,
            text_encoder,
            heads,
        };
        serde_wasm_bindgen::to_value(&profile).map_err(js_err)
    }

    /// One pass of the pretrained encoders operation by operation, as `bench --profile` does
    /// natively: `{image: {operation: ms}, text: {...}}`, each operation's time summed over
    /// the pass (an encoder trained from scratch is left out). For the benchmark's `?ops=1`.
    #[wasm_bindgen(js_name = profileOperations)]
    pub fn profile_operations(
        &self,
        image: Option<Vec<u8>>,
        caption: Option<String>,
    ) -> Result<JsValue, JsError> {
        use mvsa_model::model::{ImageEncoder, TextEncoder};
        if self.backend != "cpu" {
            // WebGPU queues its work: a step's clock would stop before the GPU ran it.
            return Err(js_err("operations are profiled on the CPU backend only"));
        }
        let pair = Pair {
            image: image.as_deref(),
            caption: caption.as_deref(),
        };
        let prepared = self.classifier.prepare(pair).map_err(js_err)?;
        let (images, tokens) = self.classifier.inputs(&[&prepared]);
        let model = self.classifier.model();
        let mut image = Operations::default();
        if let (Some(ImageEncoder::Pretrained(cnn)), Some(images)) = (model.image_encoder(), images)
        {
            image.time(|step| drop(cnn.forward_profiled(images, step)));
        }
        let mut text = Operations::default();
        if let (Some(TextEncoder::Pretrained(minilm)), Some(tokens)) =
            (model.text_encoder(), tokens)
        {
            text.time(|step| drop(minilm.encode_profiled(tokens, step)));
        }
        let both = HashMap::from([("image", image.0), ("text", text.0)]);
        both.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(js_err)
    }
}

/// Milliseconds per operation of one pass.
#[derive(Default)]
struct Operations(HashMap<&'static str, f64>);

impl Operations {
    /// Runs `pass`, which calls its `step` after each operation.
    fn time(&mut self, pass: impl FnOnce(&mut (dyn FnMut(&'static str) + Send))) {
        let mut last = now_ms();
        pass(&mut |name| {
            let now = now_ms();
            *self.0.entry(name).or_default() += now - last;
            last = now;
        });
    }
}

/// Wait until `features` are computed (a read back, which on WebGPU waits for the queue).
async fn sync(features: Option<Tensor<2>>) -> Result<Option<Tensor<2>>, JsError> {
    if let Some(t) = &features {
        t.clone()
            .into_data_async()
            .await
            .map_err(|e| js_err(format!("{e:?}")))?;
    }
    Ok(features)
}
