// Wires the page to the worker (worker.js), which hosts the wasm module: decoding, resizing,
// tokenising and the model all run in Rust (pkg/), off the main thread. This file only moves
// bytes and text between the DOM and the worker.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const BACKENDS = ["auto", "webgpu", "cpu"];
const BACKEND_KEY = "mvsa:backend";
// Where the model runs: ?backend= (for links and tests), else the Backend menu's last choice
// (remembered in this browser), else auto.
let backendChoice = [params.get("backend"), storedBackend(), "auto"].find((b) => BACKENDS.includes(b));
let models = []; // www/models.json: what each model is, costs and scores
let current = null; // the manifest entry of the model answering now
let ready = false; // whether a model is loaded
let loading = 0; // generation of the newest load, so a slow earlier one cannot win
let remember = false; // whether the Backend menu's choice is stored once its load succeeds
let loadId = 0; // the worker request of the newest load (its later backend answers count)
let asking = 0; // generation of the newest classification: only its answer is shown
let imageBytes = null;
let previewUrl = null;

// The worker and its requests: each gets an id; progress comes back with it.
const worker = new Worker(new URL("worker.js", import.meta.url), { type: "module" });
const pending = new Map();
let nextId = 0;

function storedBackend() {
  try {
    return localStorage.getItem(BACKEND_KEY);
  } catch {
    return null; // storage switched off: the choice lasts for this visit
  }
}

function request(type, payload = {}, onProgress = null, onId = null) {
  const id = ++nextId;
  onId?.(id);
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onProgress });
    worker.postMessage({ id, type, ...payload });
  });
}

worker.onmessage = ({ data }) => {
  if (data.type === "backend") return data.id === loadId && showBackend(data.backend, data.why);
  const waiting = pending.get(data.id);
  if (!waiting) return;
  if (data.type === "progress") return waiting.onProgress?.(data);
  pending.delete(data.id);
  if (data.type === "error") waiting.reject(new Error(data.message));
  else waiting.resolve(data);
};

worker.onerror = (e) => {
  e.preventDefault();
  showError(`The page's worker stopped: ${e.message ?? "it could not start"}`);
  for (const waiting of pending.values()) waiting.reject(new Error("the worker stopped"));
  pending.clear();
};

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

function message(e) {
  return e instanceof Error ? e.message : String(e);
}

function updateButton() {
  const caption = $("caption").value.trim();
  const busy = document.body.dataset.busy === "true";
  $("classify").disabled = busy || !ready || (!imageBytes && !caption);
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

async function setImage(blob) {
  clearError();
  imageBytes = new Uint8Array(await blob.arrayBuffer());
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(blob);
  $("preview").src = previewUrl;
  $("preview").hidden = false;
  $("drop-hint").hidden = true;
  updateButton();
}

function clearAll() {
  imageBytes = null;
  $("preview").hidden = true;
  $("preview").removeAttribute("src");
  $("drop-hint").hidden = false;
  $("caption").value = "";
  $("result").hidden = true;
  clearError();
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
  const caption = $("caption").value;
  setBusy(true);
  try {
    // A copy goes to the worker; the page keeps its picture for the next question.
    const image = imageBytes ? imageBytes.slice().buffer : null;
    const r = await request("classify", { image, caption: caption.trim() ? caption : null });
    if (generation !== asking) return;
    $("label").textContent = r.label;
    bars("fused", r.labels, r.fused);
    bars("image", r.labels, r.image);
    bars("text", r.labels, r.text);
    $("timing").textContent = `${r.ms.toFixed(1)} ms on ${r.backend === "webgpu" ? "WebGPU" : "the CPU (wasm)"}`;
    $("result").hidden = false;
  } catch (e) {
    if (generation !== asking) return;
    // The message replaces the previous answer, which described other input.
    $("result").hidden = true;
    showError(message(e));
  } finally {
    if (generation === asking) setBusy(false);
  }
}

async function loadSamples() {
  try {
    const samples = await (await fetch(new URL("samples/samples.json", import.meta.url))).json();
    for (const s of samples) {
      const button = document.createElement("button");
      button.type = "button";
      const url = new URL(s.image, import.meta.url).href;
      button.innerHTML = `<img alt=""><span></span>`;
      button.querySelector("img").src = url;
      button.querySelector("span").textContent = s.caption;
      button.setAttribute("aria-label", `Sample: ${s.caption}`);
      button.addEventListener("click", async () => {
        await setImage(await (await fetch(url)).blob());
        $("caption").value = s.caption;
        updateButton();
        if (ready) await classify();
      });
      $("sample-list").append(button);
    }
  } catch (e) {
    $("sample-list").textContent = `Samples unavailable: ${message(e)}`;
  }
}

const pct = (x) => `${(x * 100).toFixed(1)} %`;
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
// deviation over the folds, or (older folders) one validation split's numbers.
function showMetrics(model) {
  const v = model.validation;
  const score = (name, i, x) =>
    v.sd ? `${name} ${(x * 100).toFixed(1)} ± ${(v.sd[i] * 100).toFixed(1)} %` : `${name} ${pct(x)}`;
  const scores = [score("accuracy", 0, v.accuracy), score("macro-F1", 1, v.macro_f1), score("weighted-F1", 2, v.weighted_f1)];
  const how = v.folds
    ? `Expected on new pairs (${v.folds}-fold cross-validation over ${v.pairs.toLocaleString("en")} labelled pairs; the model was then trained on all of them)`
    : `Validation (${v.pairs} pairs)`;
  $("metrics-text").textContent = `${how}: ${scores.join(", ")}.`;
  $("confusion").src = new URL(`${model.id}/confusion.svg`, import.meta.url).href;
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
  $("caption").addEventListener("input", updateButton);
  $("form").addEventListener("submit", (e) => {
    e.preventDefault();
    classify();
  });
  $("clear").addEventListener("click", clearAll);
  $("model").addEventListener("change", () => loadModel($("model").value));
  $("backend-choice").value = backendChoice;
  $("backend-choice").addEventListener("change", () => {
    backendChoice = $("backend-choice").value;
    remember = true; // once it has loaded: a choice that fails must not fail every later visit
    // A ?backend= in the address would override the choice on the next visit.
    if (params.has("backend")) {
      params.delete("backend");
      history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
    }
    loadModel($("model").value);
  });
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
// the new one is ready, and stays if the new one fails.
async function loadModel(id) {
  const generation = ++loading;
  const model = models.find((m) => m.id === id);
  const base = new URL(`${id}/`, import.meta.url).href;
  clearError();
  $("loader").hidden = false;
  showProgress({ stage: "model", loaded: 0, total: downloadBytes(model) });
  showMetrics(model);
  try {
    const started = performance.now();
    const onProgress = (p) => generation === loading && showProgress(p);
    const onId = (id) => (loadId = id);
    const loaded = await request("load", { base, model, backend: backendChoice }, onProgress, onId);
    if (generation !== loading) return;
    current = model;
    ready = true;
    if (remember) {
      remember = false;
      try {
        localStorage.setItem(BACKEND_KEY, backendChoice);
      } catch {}
    }
    showBackend(loaded.backend, loaded.why);
    $("result").hidden = true;
    document.body.dataset.fromCache = String(loaded.fromCache);
    document.body.dataset.ready = String(performance.now() - started);
    document.body.dataset.readyAt = String(performance.now()); // since navigation
    document.body.dataset.model = id;
  } catch (e) {
    if (generation !== loading) return;
    if (!ready) $("backend").textContent = "not loaded";
    showError(`The model could not be loaded: ${message(e)}`);
    if (current) showMetrics(current);
  } finally {
    if (generation === loading) $("loader").hidden = true;
    updateButton();
  }
}

async function main() {
  wire();
  loadSamples();
  try {
    await loadManifest();
  } catch (e) {
    $("backend").textContent = "not loaded";
    showError(`The page could not start: ${message(e)}`);
    return;
  }
  // ?model=<id> picks a model of the manifest (`model-small`, or just `small`); the first
  // one is the default.
  const wanted = params.get("model");
  const chosen = models.find((m) => m.id === wanted || m.id === `model-${wanted}`) ?? models[0];
  $("model").value = chosen.id;
  await loadModel(chosen.id);
}

main();
