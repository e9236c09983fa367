//! The page's wasm API: load a model folder over HTTP (with progress and the Cache API), pick
//! WebGPU or the CPU backend, and classify image bytes + a caption with the model crate's
//! preprocessing, model and classifier, the code the native predictor runs. Every call returns
//! `Result`; nothing blocks.

use std::cell::RefCell;

use burn::prelude::*;
use js_sys::{Function, Uint8Array};
use mvsa_model::folder::{self, ModelFiles};
use mvsa_model::{Classifier, Pair, Prediction};
use serde::Serialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(start)]
pub fn start() {
    // A Rust panic becomes a console error with its message instead of an opaque trap.
    console_error_panic_hook::set_once();
}

thread_local! {
    // wgpu's runtime can be initialised once per page; later models reuse the device.
    static WEBGPU: RefCell<Option<Option<Device>>> = const { RefCell::new(None) };
    // Whether the browser's WebGPU adapter is a software fallback (asked once per page).
    static FALLBACK: RefCell<Option<bool>> = const { RefCell::new(None) };
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}

/// WebGPU if the browser has an adapter (once per page), else `None`.
async fn webgpu_device() -> Option<Device> {
    if let Some(known) = WEBGPU.with(|d| d.borrow().clone()) {
        return known;
    }
    let has_gpu = web_sys::window()
        .map(|w| js_sys::Reflect::has(&w.navigator(), &"gpu".into()).unwrap_or(false))
        .unwrap_or(false);
    let device = if has_gpu {
        match Device::wgpu_options().init_async().await {
            Ok(device) => Some(device),
            Err(e) => {
                web_sys::console::warn_1(&format!("WebGPU unavailable: {e}").into());
                None
            }
        }
    } else {
        None
    };
    WEBGPU.with(|d| *d.borrow_mut() = Some(device.clone()));
    device
}

/// Whether the browser's default WebGPU adapter is a software fallback (SwiftShader and the
/// like, `GPUAdapterInfo.isFallbackAdapter`). Burn's wgpu options do not expose the adapter, so
/// this asks `navigator.gpu` directly; any failure counts as "not a fallback".
async fn fallback_adapter() -> bool {
    if let Some(known) = FALLBACK.with(|f| *f.borrow()) {
        return known;
    }
    let get = |target: &JsValue, key: &str| {
        js_sys::Reflect::get(target, &key.into())
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    };
    let fallback = async {
        let navigator: JsValue = web_sys::window()?.navigator().into();
        let gpu = get(&navigator, "gpu")?;
        let request: Function = get(&gpu, "requestAdapter")?.dyn_into().ok()?;
        let promise: js_sys::Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
        let adapter = JsFuture::from(promise).await.ok()?;
        let flag = get(&adapter, "info")
            .and_then(|info| get(&info, "isFallbackAdapter"))
            .or_else(|| get(&adapter, "isFallbackAdapter"))?;
        flag.as_bool()
    }
    .await
    .unwrap_or(false);
    FALLBACK.with(|f| *f.borrow_mut() = Some(fallback));
    fallback
}

/// Fetch `url` as bytes. With a `cache` name, answer from that Cache API cache when it can and
/// store what was fetched; `progress(loaded, total)` is called as chunks arrive (total 0 when
/// unknown).
async fn fetch_bytes(
    url: &str,
    cache: Option<&str>,
    progress: Option<&Function>,
) -> Result<Vec<u8>, JsError> {
    let window = web_sys::window().ok_or_else(|| js_err("no window"))?;
    let cache = match (cache, window.caches()) {
        (Some(name), Ok(storage)) => JsFuture::from(storage.open(name))
            .await
            .ok()
            .map(web_sys::Cache::from),
        _ => None,
    };
    let cached = match &cache {
        Some(cache) => JsFuture::from(cache.match_with_str(url))
            .await
            .ok()
            .filter(|r| !r.is_undefined())
            .map(web_sys::Response::from),
        None => None,
    };
    let response = match cached {
        Some(response) => response,
        None => {
            let response: web_sys::Response = JsFuture::from(window.fetch_with_str(url))
                .await
                .map_err(|_| js_err(format!("cannot fetch {url}")))?
                .into();
            if !response.ok() {
                return Err(js_err(format!("{url}: HTTP {}", response.status())));
            }
            if let Some(cache) = &cache {
                let copy = response
                    .clone()
                    .map_err(|_| js_err("cannot copy response"))?;
                let _ = JsFuture::from(cache.put_with_str(url, &copy)).await;
            }
            response
        }
    };
    let total = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let body = response
        .body()
        .ok_or_else(|| js_err(format!("{url}: empty body")))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|_| js_err(format!("{url}: download interrupted")))?;
        let done = js_sys::Reflect::get(&chunk, &"done".into())
            .map(|d| d.as_bool().unwrap_or(false))
            .unwrap_or(true);
        if done {
            break;
        }
        let value = js_sys::Reflect::get(&chunk, &"value".into())
            .map_err(|_| js_err("bad stream chunk"))?;
        bytes.extend(Uint8Array::new(&value).to_vec());
        if let Some(progress) = progress {
            let _ = progress.call2(&JsValue::NULL, &(bytes.len() as f64).into(), &total.into());
        }
    }
    Ok(bytes)
}

/// What `classify` returns to JavaScript.
#[derive(Serialize)]
struct WebPrediction {
    #[serde(flatten)]
    prediction: Prediction,
    backend: String,
    ms: f64,
}

/// A loaded model folder, bound to one backend.
#[wasm_bindgen]
pub struct WebClassifier {
    classifier: Classifier,
    backend: String,
}

#[wasm_bindgen]
impl WebClassifier {
    /// Load the model folder at `base_url` (ending in `/`). `backend` is `"auto"` (WebGPU when
    /// the browser has a hardware adapter, else CPU), `"webgpu"` or `"cpu"`. `progress(loaded, total)`
    /// follows the weights download.
    pub async fn load(
        base_url: String,
        backend: String,
        progress: Option<Function>,
    ) -> Result<WebClassifier, JsError> {
        let url = |name: &str| format!("{base_url}{name}");
        // The small files are always fetched; every training run writes a different
        // metrics.json, so their digest names the cache the large files live in, and a retrained
        // model is never paired with stale cached weights.
        let config = fetch_bytes(&url(folder::CONFIG), None, None).await?;
        let metrics = fetch_bytes(&url(folder::METRICS), None, None)
            .await
            .unwrap_or_default();
        let cache = folder::cache_name(&config, &metrics);
        let has_text = folder::read_config(&config).map_err(js_err)?.text.is_some();
        let tokenizer = match has_text {
            true => Some(fetch_bytes(&url(folder::TOKENIZER), Some(&cache), None).await?),
            false => None,
        };
        let weights = fetch_bytes(&url(folder::WEIGHTS), Some(&cache), progress.as_ref()).await?;
        Self::from_bytes(config, tokenizer, weights, backend).await
    }

    /// Build from the folder's files' bytes (`tokenizer` may be absent for a picture-only
    /// model; see [`WebClassifier::load`] for `backend`).
    #[wasm_bindgen(js_name = fromBytes)]
    pub async fn from_bytes(
        config: Vec<u8>,
        tokenizer: Option<Vec<u8>>,
        weights: Vec<u8>,
        backend: String,
    ) -> Result<WebClassifier, JsError> {
        let (device, name) = match backend.as_str() {
            "cpu" => (Device::flex(), "cpu"),
            "webgpu" => match webgpu_device().await {
                Some(device) => (device, "webgpu"),
                None => return Err(js_err("this browser has no WebGPU adapter")),
            },
            // A software WebGPU adapter is far slower than the CPU backend (seconds against
            // milliseconds per pair), so `auto` takes WebGPU only from real hardware.
            "auto" if fallback_adapter().await => (Device::flex(), "cpu"),
            "auto" => match webgpu_device().await {
                Some(device) => (device, "webgpu"),
                None => (Device::flex(), "cpu"),
            },
            other => {
                return Err(js_err(format!(
                    "unknown backend {other:?}; use auto, webgpu or cpu"
                )));
            }
        };
        let files = ModelFiles::from_bytes(&config, tokenizer, weights).map_err(js_err)?;
        let classifier = Classifier::new(files, &device).map_err(js_err)?;
        Ok(WebClassifier {
            classifier,
            backend: name.to_string(),
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
        let prediction = self
            .classifier
            .classify_async(&[pair])
            .await
            .map_err(js_err)?
            .remove(0);
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
}
