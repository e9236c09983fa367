// Wires the page to the worker (worker.js, through bridge.js), which hosts the wasm module:
// decoding, resizing, tokenising, the model and its explanations all run in Rust (pkg/), off
// the main thread. This file only moves bytes and text between the DOM and the worker; the
// folder mode is folder.js, the drawing of explanations explain.js.

import { $, confusionTable, listen, message, pct, request } from "./bridge.js";
import { explanationPending, showExplanation } from "./explain.js";
import { wireFolder } from "./folder.js";

const params = new URLSearchParams(location.search);
const BACKENDS = ["auto", "webgpu", "cpu"];
const BACKEND_KEY = "mvsa:backend";
const MODEL_KEY = "mvsa:model";
// Where the model runs: ?backend= (for links and tests), else the Backend menu's last choice
// (remembered in this browser), else auto.
let backendChoice = [params.get("backend"), stored(BACKEND_KEY), "auto"].find((b) => BACKENDS.includes(b));
let models = []; // www/models.json: what each model is, costs and scores
let current = null; // the manifest entry of the model answering now
let limits = {}; // what the loaded model accepts: {maxCaptionBytes, maxSide, maxFileBytes, formats}
let ready = false; // whether a model is loaded
let loading = 0; // generation of the newest load, so a slow earlier one cannot win
let remember = false; // whether the Backend menu's choice is stored once its load succeeds
let asking = 0; // generation of the newest classification: only its answer is shown
let picking = 0; // generation of the newest picture chosen: only its check counts
let imageBytes = null;
let previewUrl = null;

function stored(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null; // storage switched off: the choice lasts for this visit
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {}
}

listen((data) => {
  // Only the serving worker's answers come here, and it has had one load.
  if (data.type === "backend") return showBackend(data.backend, data.why);
  if (data.type === "stopped") {
    // Its model went with it: load it again in a new worker.
    ready = false;
    updateButton();
    showError(`The page's worker stopped (${data.message}); loading the model again.`);
    if (current) loadModel(current.id, { keepError: true });
  }
});

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

const utf8Bytes = (text) => new TextEncoder().encode(text).length;

function captionProblem() {
  const bytes = utf8Bytes($("caption").value);
  const limit = limits.maxCaptionBytes;
  return limit && bytes > limit ? `The caption is ${bytes.toLocaleString("en")} bytes; the limit is ${limit.toLocaleString("en")}.` : null;
}

function updateButton() {
  const caption = $("caption").value.trim();
  const busy = document.body.dataset.busy === "true";
  $("classify").disabled = busy || !ready || (!imageBytes && !caption) || captionProblem() !== null;
}

// The caption's size against the model's limit, as it is typed.
function updateCount() {
  const bytes = utf8Bytes($("caption").value);
  const limit = limits.maxCaptionBytes;
  const count = $("caption-count");
  count.textContent = limit ? `${bytes.toLocaleString("en")} / ${limit.toLocaleString("en")} bytes` : `${bytes.toLocaleString("en")} bytes`;
  count.classList.toggle("over", captionProblem() !== null);
  if (captionProblem()) count.textContent += ` — too long by ${(bytes - limit).toLocaleString("en")}`;
}

function setBusy(busy) {
  document.body.dataset.busy = String(busy);
  $("classify").textContent = busy ? "Classifying…" : "Classify";
  $("result").setAttribute("aria-busy", String(busy));
  updateButton();
}

// The badge says where the model runs, and its tooltip why.
function showBackend(backend, why) {
  const badge = $("backend");
  badge.textContent = backend === "webgpu" ? "WebGPU" : "CPU (wasm)";
  badge.title = why ? `${badge.textContent}: ${why}` : "Where the model runs";
  badge.classList.remove("webgpu", "cpu");
  badge.classList.add(backend);
  document.body.dataset.backend = backend;
}

// A result describes the input it was given: new input hides it.
function hideResult() {
  asking++;
  $("result").hidden = true;
  explanationPending(false);
  setBusy(false);
}

function showPicture(blob) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = blob ? URL.createObjectURL(blob) : null;
  $("preview").hidden = !blob;
  if (blob) $("preview").src = previewUrl;
  else $("preview").removeAttribute("src");
  $("drop-hint").hidden = Boolean(blob);
}

// A chosen picture is checked at once (decoded in the worker, as classify will): a file that
// cannot be used is said so now, and is neither previewed nor kept.
async function setImage(blob) {
  const generation = ++picking;
  clearError();
  hideResult();
  // The previous picture goes at once: a click before this one is checked must not send it.
  imageBytes = null;
  showPicture(null);
  updateButton();
  const refuse = (why) => {
    $("file").value = "";
    showError(`${blob.name ? `${blob.name}: ` : ""}this file cannot be used: ${why}.`);
  };
  if (limits.maxFileBytes && blob.size > limits.maxFileBytes) {
    const mb = (n) => (n / 2 ** 20).toFixed(1);
    return refuse(`it is ${mb(blob.size)} MB; pictures up to ${mb(limits.maxFileBytes)} MB are read`);
  }
  const bytes = new Uint8Array(await blob.arrayBuffer());
  if (generation !== picking) return;
  try {
    await request("inspect", { image: bytes.slice().buffer });
  } catch (e) {
    if (generation === picking) refuse(message(e));
    return;
  }
  if (generation !== picking) return;
  imageBytes = bytes;
  showPicture(blob);
  updateButton();
}

function clearAll() {
  picking++;
  imageBytes = null;
  showPicture(null);
  $("file").value = ""; // so that the same picture can be chosen again
  $("caption").value = "";
  hideResult();
  clearError();
  updateCount();
  updateButton();
}

function bars(id, labels, probs) {
  const box = $(id);
  box.querySelectorAll(".bar, .none").forEach((el) => el.remove());
  if (!probs) {
    const none = document.createElement("p");
    none.className = "none";
    none.textContent = "not given";
    box.append(none);
    return;
  }
  labels.forEach((label, i) => {
    const row = document.createElement("div");
    row.className = `bar ${label}`;
    row.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
    row.querySelector(".name").textContent = label;
    row.querySelector(".fill").style.width = `${(probs[i] * 100).toFixed(1)}%`;
    row.querySelector(".value").textContent = `${(probs[i] * 100).toFixed(1)} %`;
    row.dataset.probability = String(probs[i]);
    box.append(row);
  });
}

async function classify() {
  clearError();
  const generation = ++asking;
  const caption = $("caption").value.trim() ? $("caption").value : null;
  const image = imageBytes;
  const url = previewUrl;
  setBusy(true);
  explanationPending(false);
  let r;
  try {
    // A copy goes to the worker; the page keeps its picture for the next question.
    r = await request("classify", { image: image?.slice().buffer ?? null, caption });
    if (generation !== asking) return;
    $("label").textContent = r.label;
    bars("fused", r.labels, r.fused);
    bars("image", r.labels, r.image);
    bars("text", r.labels, r.text);
    const where = r.backend === "webgpu" ? "WebGPU" : "the CPU (wasm)";
    $("timing").textContent = `Answered by ${current.title} in ${r.ms.toFixed(1)} ms on ${where}.`;
    $("timing").title = `The model's engine holds ${megabytes(r.wasmBytes)} of memory.`;
    $("result").dataset.wasmBytes = String(r.wasmBytes);
    $("result").hidden = false;
    $("result").dataset.model = current.id;
  } catch (e) {
    if (generation !== asking) return;
    // The message replaces the previous answer, which described other input.
    $("result").hidden = true;
    showError(message(e));
    return;
  } finally {
    if (generation === asking) setBusy(false);
  }
  await explain(generation, image, caption, r.label, url);
}

// After the label is shown: which words and squares of the picture moved it.
async function explain(generation, image, caption, label, url) {
  explanationPending(true);
  try {
    const e = await request("explain", { image: image?.slice().buffer ?? null, caption, grid: 4 });
    if (generation !== asking) return;
    if (e.stale) return explanationPending(false); // a folder's pair came in between
    showExplanation(e, label, url);
    document.body.dataset.explained = String(generation);
  } catch (e) {
    if (generation === asking) explanationPending(true, `No explanation: ${message(e)}`);
  }
}

async function loadSamples() {
  try {
    const samples = await (await fetch(new URL("samples/samples.json", import.meta.url))).json();
    for (const s of samples) {
      const button = document.createElement("button");
      button.type = "button";
      const url = new URL(s.image, import.meta.url).href;
      button.innerHTML = `<img alt=""><span class="caption"></span><span class="truth"></span>`;
      button.querySelector("img").src = url;
      button.querySelector(".caption").textContent = s.caption;
      button.querySelector(".truth").textContent = s.label ? `labelled ${s.label}` : "";
      button.dataset.label = s.label ?? "";
      button.setAttribute("aria-label", `Sample, labelled ${s.label}: ${s.caption}`);
      button.addEventListener("click", async () => {
        let picture;
        try {
          const response = await fetch(url);
          if (!response.ok) throw new Error(`HTTP ${response.status}`);
          picture = await response.blob();
        } catch (e) {
          return showError(`The sample's picture could not be loaded: ${message(e)}`);
        }
        await setImage(picture);
        $("caption").value = s.caption;
        updateCount();
        updateButton();
        if (ready && imageBytes) await classify();
      });
      $("sample-list").append(button);
    }
  } catch (e) {
    $("sample-list").textContent = `Samples unavailable: ${message(e)}`;
  }
}

const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
const downloadBytes = (m) => Object.values(m.files).reduce((a, b) => a + b, 0);

// The model menu, from the manifest the trainer writes: each choice states what it costs to
// download and how accurate it was.
async function loadManifest() {
  const response = await fetch(new URL("models.json", import.meta.url));
  if (!response.ok) throw new Error(`www/models.json: HTTP ${response.status}`);
  models = (await response.json()).models;
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.id;
    const estimate = m.validation.folds ? "expected accuracy (cross-validated)" : "validation accuracy";
    option.textContent = `${m.title} — ${megabytes(downloadBytes(m))}, ${pct(m.validation.accuracy)} ${estimate}`;
    $("model").append(option);
  }
}

// What the model is expected to score on new pairs: cross-validated means ± their standard
// deviation over the folds, or (older folders) one validation split's numbers; and where its
// errors go, from the folder's metrics.json.
async function showMetrics(model) {
  const v = model.validation;
  const score = (name, i, x) =>
    v.sd ? `${name} ${(x * 100).toFixed(1)} ± ${(v.sd[i] * 100).toFixed(1)} %` : `${name} ${pct(x)}`;
  const scores = [score("accuracy", 0, v.accuracy), score("macro-F1", 1, v.macro_f1), score("weighted-F1", 2, v.weighted_f1)];
  const how = v.folds
    ? `Expected on new pairs (${v.folds}-fold cross-validation over ${v.pairs.toLocaleString("en")} labelled pairs; the model was then trained on all of them)`
    : `Validation (${v.pairs} pairs)`;
  $("metrics-text").textContent = `${how}: ${scores.join(", ")}.`;
  $("confusion").dataset.model = model.id;
  try {
    const response = await fetch(new URL(`${model.id}/metrics.json`, import.meta.url));
    const metrics = (await response.json()).validation;
    if ($("confusion").dataset.model !== model.id) return;
    const labels = metrics.per_class.map((c) => c.label);
    const caption = v.folds ? "Where the answers went, over the cross-validation folds" : "Where the answers went, on the validation split";
    $("confusion").replaceChildren(confusionTable(labels, metrics.confusion, caption));
  } catch {
    $("confusion").replaceChildren();
  }
}

function wire() {
  const drop = $("drop");
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      $("file").click();
    }
  });
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) setImage(file);
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) setImage(file);
  });
  document.addEventListener("paste", (e) => {
    const item = [...e.clipboardData.items].find((i) => i.kind === "file");
    if (item) setImage(item.getAsFile());
  });
  $("caption").addEventListener("input", () => {
    hideResult();
    updateCount();
    updateButton();
  });
  $("form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!$("classify").disabled) classify();
  });
  $("clear").addEventListener("click", clearAll);
  $("model").addEventListener("change", () => loadModel($("model").value));
  $("backend-choice").value = backendChoice;
  $("backend-choice").addEventListener("change", () => {
    backendChoice = $("backend-choice").value;
    remember = true; // once it has loaded: a choice that fails must not fail every later visit
    keepInAddress("backend", null); // a ?backend= would override the choice on the next visit
    loadModel($("model").value);
  });
  wireFolder();
}

// Set (or, with null, drop) a parameter of the page's address without reloading.
function keepInAddress(name, value) {
  if (value === null) params.delete(name);
  else params.set(name, value);
  history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
}

const STAGES = {
  engine: "Downloading the engine",
  model: "Downloading the model",
  preparing: "Preparing the model",
  warming: "Warming up",
};

function showProgress({ stage, loaded, total, fromCache }) {
  $("progress-label").textContent = STAGES[stage] ?? stage;
  if (total) {
    $("progress").value = loaded / total;
    const cached = fromCache ? " (from cache)" : "";
    $("progress-text").textContent = `${megabytes(loaded)} of ${megabytes(total)}${cached}`;
  } else {
    $("progress").removeAttribute("value"); // indeterminate while preparing
    $("progress-text").textContent = "";
  }
}

// Load (or switch to) the model `id` of the manifest; the previous model keeps answering until
// the new one is ready, and stays (in the menu too) if the new one fails.
async function loadModel(id, { keepError = false } = {}) {
  const generation = ++loading;
  const model = models.find((m) => m.id === id);
  const base = new URL(`${id}/`, import.meta.url).href;
  if (!keepError) clearError();
  $("loader").hidden = false;
  showProgress({ stage: "model", loaded: 0, total: downloadBytes(model) });
  showMetrics(model);
  try {
    const started = performance.now();
    const onProgress = (p) => generation === loading && showProgress(p);
    const loaded = await request("load", { base, model, backend: backendChoice }, onProgress);
    if (generation !== loading) return;
    current = model;
    limits = loaded.limits ?? {};
    ready = true;
    if (remember) {
      remember = false;
      store(BACKEND_KEY, backendChoice);
    }
    store(MODEL_KEY, id);
    keepInAddress("model", id === models[0].id ? null : id);
    showBackend(loaded.backend, loaded.why);
    hideResult();
    updateCount();
    document.body.dataset.fromCache = String(loaded.fromCache);
    document.body.dataset.ready = String(performance.now() - started);
    document.body.dataset.readyAt = String(performance.now()); // since navigation
    document.body.dataset.model = id;
  } catch (e) {
    if (generation !== loading) return;
    if (!ready) $("backend").textContent = "not loaded";
    showError(`The model could not be loaded: ${message(e)}`);
    if (current) {
      $("model").value = current.id;
      showMetrics(current);
    }
  } finally {
    if (generation === loading) $("loader").hidden = true;
    updateButton();
  }
}

async function main() {
  wire();
  updateCount();
  loadSamples();
  navigator.serviceWorker?.register(new URL("../sw.js", import.meta.url)).catch(() => {});
  try {
    await loadManifest();
  } catch (e) {
    $("backend").textContent = "not loaded";
    showError(`The page could not start: ${message(e)}`);
    return;
  }
  // ?model=<id> picks a model of the manifest (`model-small`, or just `small`), else the one
  // last loaded in this browser; the first one is the default.
  const wanted = params.get("model") ?? stored(MODEL_KEY);
  const chosen = models.find((m) => m.id === wanted || m.id === `model-${wanted}`) ?? models[0];
  $("model").value = chosen.id;
  await loadModel(chosen.id);
}

main();
