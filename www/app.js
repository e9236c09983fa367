// Wires the page to the worker (worker.js, through bridge.js), which hosts the wasm module:
// decoding, resizing, tokenising, the model and its explanations all run in Rust (pkg/), off
// the main thread. This file only moves bytes and text between the DOM and the worker; the
// answer is drawn by answer.js, explanations by explain.js, the model menu and loading
// progress by models.js, the folder mode is folder.js.

import { $, listen, message, request } from "./bridge.js";
import { revealAnswer, showAnswer } from "./answer.js";
import { explanationPending, showExplanation } from "./explain.js";
import { wireFolder } from "./folder.js";
import { adapterInfo } from "./gpu.js";
import { LoadProgress, cachedModels, loadManifest, megabytes, offline, showMetrics } from "./models.js";

const params = new URLSearchParams(location.search);
const BACKENDS = ["auto", "webgpu", "cpu"];
const BACKEND_KEY = "mvsa:backend";
const MODEL_KEY = "mvsa:model";
// Where the model runs: ?backend= (for links and tests), else the Backend menu's last choice
// (remembered in this browser), else auto.
let backendChoice = [params.get("backend"), stored(BACKEND_KEY), "auto"].find((b) => BACKENDS.includes(b));
// Threads for the CPU: ?threads=N, else the device's cores, at most 8 (the worker says how many
// it got: more than one only where the page is cross-origin isolated).
const THREADS = Number(params.get("threads")) || Math.min(navigator.hardwareConcurrency || 1, 8);
let serving = { backend: null, choice: null, threads: 1 }; // where the loaded model runs (on how many threads), and the menu choice that put it there
let models = []; // www/models.json: what each model is, costs and scores
let current = null; // the manifest entry of the model answering now
let limits = {}; // what the loaded model accepts: {maxCaptionBytes, maxSide, maxFileBytes, formats}
let ready = false; // whether a model is loaded
let busy = false; // whether a classification is under way
let loading = 0; // generation of the newest load, so a slow earlier one cannot win
let remember = false; // whether the Backend menu's choice is stored once its load succeeds
let asking = 0; // generation of the newest classification: only its answer is shown
let picking = 0; // generation of the newest picture chosen: only its check counts
let checking = null; // the newest picture's check while it runs: resolves to whether it was kept
let imageBytes = null; // the picture that passed its check
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
  if (data.type === "backend") return showBackend(data);
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

// Disabled only for want of input or a model; while busy the button keeps its focus (a
// disabled button drops it) and says so instead.
function updateButton() {
  const caption = $("caption").value.trim();
  const button = $("classify");
  button.disabled = !ready || (!imageBytes && !checking && !caption) || captionProblem() !== null;
  button.setAttribute("aria-disabled", String(busy || button.disabled));
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

function setBusy(now, text = "Classifying…") {
  busy = now;
  document.body.dataset.busy = String(now);
  $("classify").textContent = now ? text : "Classify";
  $("result").setAttribute("aria-busy", String(now));
  updateButton();
}

// The badge says where the model runs (on the CPU, on how many threads), and its tooltip why.
function showBackend({ backend, why, threads = 1, threadsWhy }) {
  const badge = $("backend");
  const cpu = threads > 1 ? `CPU (wasm, ${threads} threads)` : "CPU (wasm)";
  badge.textContent = backend === "webgpu" ? "WebGPU" : cpu;
  const reasons = [why, backend === "cpu" ? threadsWhy : null].filter(Boolean).join("; ");
  badge.title = reasons ? `${badge.textContent}: ${reasons}` : "Where the model runs";
  badge.classList.remove("webgpu", "cpu");
  badge.classList.add(backend);
  document.body.dataset.backend = backend;
  document.body.dataset.threads = String(backend === "cpu" ? threads : 0);
  serving.backend = backend;
  serving.threads = threads;
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

// A chosen picture is checked at once (decoded in the worker, as classify will). Until the
// check ends, Classify waits for it; a file that cannot be used is said so and the picture
// chosen before it stays.
async function setImage(blob) {
  const generation = ++picking;
  clearError();
  hideResult();
  const check = checkPicture(blob, generation);
  checking = check;
  document.body.dataset.checking = "true";
  $("drop-status").textContent = "Checking the picture…";
  updateButton();
  const kept = await check;
  if (generation === picking) {
    checking = null;
    delete document.body.dataset.checking;
    $("drop-status").textContent = "";
    updateButton();
  }
  return kept;
}

async function checkPicture(blob, generation) {
  const refuse = (why) => {
    if (generation !== picking) return false;
    $("file").value = "";
    const kept = imageBytes ? " The picture chosen before it is kept." : "";
    showError(`${blob.name ? `${blob.name}: ` : ""}this file cannot be used: ${why}.${kept}`);
    return false;
  };
  if (limits.maxFileBytes && blob.size > limits.maxFileBytes) {
    const mb = (n) => (n / 2 ** 20).toFixed(1);
    return refuse(`it is ${mb(blob.size)} MB; pictures up to ${mb(limits.maxFileBytes)} MB are read`);
  }
  let bytes;
  try {
    bytes = new Uint8Array(await blob.arrayBuffer());
    if (generation !== picking) return false;
    await request("inspect", { image: bytes.slice().buffer });
  } catch (e) {
    return refuse(message(e));
  }
  if (generation !== picking) return false;
  imageBytes = bytes;
  showPicture(blob);
  return true;
}

function clearAll() {
  picking++;
  checking = null;
  delete document.body.dataset.checking;
  $("drop-status").textContent = "";
  imageBytes = null;
  showPicture(null);
  $("file").value = ""; // so that the same picture can be chosen again
  $("caption").value = "";
  hideResult();
  clearError();
  updateCount();
  updateButton();
}

async function classify() {
  if (busy) return;
  const generation = ++asking;
  clearError();
  explanationPending(false);
  if (checking) {
    // A picture chosen a moment ago: the answer must be about it.
    setBusy(true, "Checking the picture…");
    const kept = await checking;
    if (generation !== asking) return;
    setBusy(false);
    if (!kept) return; // the message says why; nothing was classified
  }
  const caption = $("caption").value.trim() ? $("caption").value : null;
  const image = imageBytes;
  const url = previewUrl;
  const sent = { picture: Boolean(image), caption: Boolean(caption) };
  setBusy(true);
  let r;
  try {
    // A copy goes to the worker; the page keeps its picture for the next question.
    r = await request("classify", { image: image?.slice().buffer ?? null, caption });
    if (generation !== asking) return;
    showAnswer(r, sent);
    const where = r.backend === "webgpu" ? "WebGPU" : serving.threads > 1 ? `the CPU (wasm, ${serving.threads} threads)` : "the CPU (wasm)";
    $("timing").textContent = `Answered by ${current.title} in ${r.ms.toFixed(1)} ms on ${where}.`;
    $("timing").title = `The model's engine holds ${megabytes(r.wasmBytes)} of memory.`;
    $("result").dataset.wasmBytes = String(r.wasmBytes);
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
  revealAnswer();
  await explain(generation, image, caption, r, url);
}

// After the label is shown: which words and squares of the picture moved it.
async function explain(generation, image, caption, answer, url) {
  explanationPending(true);
  try {
    const e = await request("explain", { image: image?.slice().buffer ?? null, caption, grid: 4 });
    if (generation !== asking) return;
    if (e.stale) return explanationPending(false); // a folder's pair came in between
    showExplanation(e, answer.label, url);
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
      // The visible text is the button's name (caption, then its label).
      button.innerHTML = `<img alt=""><span class="caption"></span><span class="truth"></span>`;
      button.querySelector("img").src = url;
      button.querySelector(".caption").textContent = s.caption;
      button.querySelector(".truth").textContent = s.label ? `labelled ${s.label}` : "";
      button.dataset.label = s.label ?? "";
      button.addEventListener("click", async () => {
        let picture;
        try {
          const response = await fetch(url);
          if (!response.ok) throw new Error(`HTTP ${response.status}`);
          picture = await response.blob();
        } catch (e) {
          return showError(`The sample's picture could not be loaded: ${message(e)}`);
        }
        $("caption").value = s.caption;
        updateCount();
        const kept = await setImage(picture);
        if (ready && kept) await classify();
      });
      $("sample-list").append(button);
    }
  } catch (e) {
    $("sample-list").textContent = `Samples unavailable: ${message(e)}`;
  }
}

// Choosing WebGPU in the Backend menu: said at once where there is no adapter, and asked
// first where it is a software one (minutes to load, seconds an answer).
async function chooseBackend(choice) {
  $("gpu-warning").hidden = true;
  if (choice === "webgpu") {
    const adapter = await adapterInfo();
    if (adapter.kind === "none") return keepBackend(`WebGPU cannot be used: ${adapter.why}; still on ${onWhat()}.`);
    if (adapter.kind === "software") {
      $("gpu-warning-text").textContent = `This browser's WebGPU adapter (${adapter.name}) is a software fallback: on it, loading the model can take minutes and each answer seconds, where the CPU answers in a fraction of a second.`;
      $("gpu-warning").hidden = false;
      $("gpu-go").focus();
      return;
    }
  }
  useBackend(choice);
}

const onWhat = () => (serving.backend === "webgpu" ? "WebGPU" : "the CPU");

// The menu back on the choice that is serving, with `text` saying why.
function keepBackend(text) {
  closeWarning();
  backendChoice = serving.choice ?? backendChoice;
  $("backend-choice").value = backendChoice;
  if (text) showError(text);
}

// The WebGPU question answered: it goes, and the focus goes back to the menu it came from.
function closeWarning() {
  const focused = $("gpu-warning").contains(document.activeElement);
  $("gpu-warning").hidden = true;
  if (focused) $("backend-choice").focus();
}

function useBackend(choice) {
  closeWarning();
  backendChoice = choice;
  remember = true; // once it has loaded: a choice that fails must not fail every later visit
  keepInAddress("backend", null); // a ?backend= would override the choice on the next visit
  loadModel($("model").value);
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
  // Ctrl+Enter (or Cmd+Enter) in the caption classifies.
  $("caption").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      $("form").requestSubmit();
    }
  });
  $("form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!$("classify").disabled && !busy) classify();
  });
  $("clear").addEventListener("click", clearAll);
  $("model").addEventListener("change", () => loadModel($("model").value));
  $("backend-choice").value = backendChoice;
  $("backend-choice").addEventListener("change", () => chooseBackend($("backend-choice").value));
  $("gpu-go").addEventListener("click", () => useBackend("webgpu"));
  $("gpu-stay").addEventListener("click", () => keepBackend(null));
  wireFolder();
}

// Set (or, with null, drop) a parameter of the page's address without reloading.
function keepInAddress(name, value) {
  if (value === null) params.delete(name);
  else params.set(name, value);
  history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
}

// Why a load failed, in words: no network, no WebGPU adapter, or what the worker said.
async function loadFailure(e, model, backend) {
  if (offline(e)) {
    const available = (await cachedModels(models)).map((m) => m.title);
    const which = available.length ? `available offline: ${available.join(", ")}` : "no model is available offline yet";
    return `${model.title} could not be loaded: the page is offline, and this browser has not downloaded it (${which}).`;
  }
  if (backend === "webgpu" && ready) return `WebGPU could not be used (${message(e)}); still on ${onWhat()}.`;
  return `The model could not be loaded: ${message(e)}`;
}

// Load (or switch to) the model `id` of the manifest; the previous model keeps answering until
// the new one is ready, and stays (in the menus too) if the new one fails.
async function loadModel(id, { keepError = false } = {}) {
  const generation = ++loading;
  const model = models.find((m) => m.id === id);
  const base = new URL(`${id}/`, import.meta.url).href;
  const backend = backendChoice;
  if (!keepError) clearError();
  $("loader").hidden = false;
  const progress = new LoadProgress(model);
  showMetrics(model);
  try {
    const started = performance.now();
    const onProgress = (p) => generation === loading && progress.show(p);
    const loaded = await request("load", { base, model, backend, threads: THREADS }, onProgress);
    if (generation !== loading) return;
    current = model;
    limits = loaded.limits ?? {};
    ready = true;
    serving.choice = backend;
    if (remember) {
      remember = false;
      store(BACKEND_KEY, backend);
    }
    store(MODEL_KEY, id);
    keepInAddress("model", id === models[0].id ? null : id);
    showBackend(loaded);
    hideResult();
    updateCount();
    document.body.dataset.fromCache = String(loaded.fromCache);
    document.body.dataset.ready = String(performance.now() - started);
    document.body.dataset.readyAt = String(performance.now()); // since navigation
    document.body.dataset.model = id;
  } catch (e) {
    if (generation !== loading) return;
    remember = false;
    const adapter = !ready && backend === "webgpu" ? await adapterInfo() : null;
    if (generation !== loading) return; // another load began meanwhile
    if (adapter?.kind === "none") {
      // A link or an earlier visit asked for WebGPU, which this browser lacks: the CPU serves
      // (and a remembered choice is forgotten, so the next visit does not fail first).
      showError(`WebGPU cannot be used: ${adapter.why}; loading on the CPU instead.`);
      backendChoice = "auto";
      $("backend-choice").value = backendChoice;
      if (stored(BACKEND_KEY) === "webgpu") store(BACKEND_KEY, "auto");
      return loadModel(id, { keepError: true });
    }
    const why = await loadFailure(e, model, backend);
    if (generation !== loading) return;
    if (!ready) $("backend").textContent = "not loaded";
    showError(why);
    if (current) {
      $("model").value = current.id;
      showMetrics(current);
      keepBackend(null);
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
    models = await loadManifest();
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
