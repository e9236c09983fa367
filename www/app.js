// Wires the page to the wasm module. Decoding, resizing, tokenising and the model all run in
// Rust (pkg/); this file only moves bytes and text between the DOM and `WebClassifier`.
import init, { WebClassifier } from "../pkg/mvsa_sentiment.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const backendChoice = params.get("backend") ?? "auto";
let models = []; // www/models.json: what each model is, costs and scores
let modelUrl = null;
let classifier = null;
let loading = 0; // generation of the newest load, so a slow earlier one cannot win
let imageBytes = null;
let previewUrl = null;

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
  $("classify").disabled = !classifier || (!imageBytes && !caption);
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
  const caption = $("caption").value;
  $("classify").disabled = true;
  try {
    const r = await classifier.classify(imageBytes, caption.trim() ? caption : undefined);
    $("label").textContent = r.label;
    bars("fused", r.labels, r.fused);
    bars("image", r.labels, r.image);
    bars("text", r.labels, r.text);
    $("timing").textContent = `${r.ms.toFixed(1)} ms on ${r.backend === "webgpu" ? "WebGPU" : "the CPU (wasm)"}`;
    $("result").hidden = false;
  } catch (e) {
    // The message replaces the previous answer, which described other input.
    $("result").hidden = true;
    showError(message(e));
  } finally {
    updateButton();
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
        if (classifier) await classify();
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
    option.textContent = `${m.title} — ${megabytes(downloadBytes(m))}, ${pct(m.validation.accuracy)} validation accuracy`;
    $("model").append(option);
  }
}

function showMetrics(model) {
  const v = model.validation;
  $("metrics-text").textContent =
    `Validation (${v.pairs} pairs): accuracy ${pct(v.accuracy)}, ` +
    `macro-F1 ${pct(v.macro_f1)}, weighted-F1 ${pct(v.weighted_f1)}.`;
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
}

// Load (or switch to) the model `id` of the manifest; the previous model keeps answering until
// the new one is ready, and stays if the new one fails.
async function loadModel(id) {
  const generation = ++loading;
  const model = models.find((m) => m.id === id);
  const url = new URL(`${id}/`, import.meta.url).href;
  clearError();
  $("loader").hidden = false;
  $("progress").value = 0;
  $("progress-text").textContent = "";
  showMetrics(model);
  try {
    const started = performance.now();
    const next = await WebClassifier.load(url, backendChoice, (loaded, total) => {
      if (generation !== loading) return;
      $("progress").value = total ? loaded / total : 0;
      $("progress-text").textContent = total
        ? `${(loaded / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`
        : `${(loaded / 1e6).toFixed(1)} MB`;
    });
    if (generation !== loading) {
      next.free();
      return;
    }
    classifier?.free();
    classifier = next;
    modelUrl = url;
    const badge = $("backend");
    badge.textContent = classifier.backend === "webgpu" ? "WebGPU" : "CPU (wasm)";
    badge.classList.remove("webgpu", "cpu");
    badge.classList.add(classifier.backend);
    $("result").hidden = true;
    document.body.dataset.ready = String(performance.now() - started);
    document.body.dataset.model = id;
  } catch (e) {
    if (generation !== loading) return;
    if (!classifier) $("backend").textContent = "not loaded";
    showError(`The model could not be loaded: ${message(e)}`);
    const current = models.find((m) => new URL(`${m.id}/`, import.meta.url).href === modelUrl);
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
    await Promise.all([init(), loadManifest()]);
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
