// Wires the page to the wasm module. Decoding, resizing, tokenising and the model all run in
// Rust (pkg/); this file only moves bytes and text between the DOM and `WebClassifier`.
import init, { WebClassifier } from "../pkg/mvsa_sentiment.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const backendChoice = params.get("backend") ?? "auto";
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

// Accuracy (from the folder's metrics.json) and download size (from the weights' headers) of a
// model folder, so each choice states what it costs and what it buys.
async function describe(url) {
  const [metrics, head] = await Promise.all([
    fetch(new URL("metrics.json", url)).then((r) => (r.ok ? r.json() : null)),
    fetch(new URL("model.bpk", url), { method: "HEAD" }),
  ]);
  const bytes = Number(head.headers.get("content-length") ?? 0);
  return { metrics, bytes, ok: head.ok && metrics !== null };
}

async function describeModels() {
  for (const option of $("model").options) {
    const url = new URL(option.value, import.meta.url).href;
    try {
      const { metrics, bytes, ok } = await describe(url);
      if (!ok) {
        option.disabled = true;
        option.textContent += " (not available)";
        continue;
      }
      option.textContent += ` — ${(bytes / 1e6).toFixed(1)} MB, ${pct(metrics.validation.accuracy)} validation accuracy`;
    } catch {
      option.disabled = true;
    }
  }
}

async function loadMetrics(url) {
  try {
    const m = await (await fetch(new URL("metrics.json", url))).json();
    const v = m.validation;
    $("metrics-text").textContent =
      `Validation (${m.validation_pairs} pairs): accuracy ${pct(v.accuracy)}, ` +
      `macro-F1 ${pct(v.macro_f1)}, weighted-F1 ${pct(v.weighted_f1)}.`;
    $("confusion").src = new URL("confusion.svg", url).href;
  } catch (e) {
    $("metrics-text").textContent = `Metrics unavailable: ${message(e)}`;
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
  $("caption").addEventListener("input", updateButton);
  $("form").addEventListener("submit", (e) => {
    e.preventDefault();
    classify();
  });
  $("clear").addEventListener("click", clearAll);
  $("model").addEventListener("change", () => loadModel($("model").value));
}

// Load (or switch to) the model folder `folder`; the previous model keeps answering until the
// new one is ready, and stays if the new one fails.
async function loadModel(folder) {
  const generation = ++loading;
  const url = new URL(folder, import.meta.url).href;
  clearError();
  $("loader").hidden = false;
  $("progress").value = 0;
  $("progress-text").textContent = "";
  loadMetrics(url);
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
    document.body.dataset.model = folder;
  } catch (e) {
    if (generation !== loading) return;
    if (!classifier) $("backend").textContent = "not loaded";
    showError(`The model could not be loaded: ${message(e)}`);
    if (modelUrl) loadMetrics(modelUrl);
  } finally {
    if (generation === loading) $("loader").hidden = true;
    updateButton();
  }
}

async function main() {
  wire();
  loadSamples();
  // ?model=small picks the small model (links, tests); the select follows.
  if (params.get("model") === "small") $("model").value = "model-small/";
  describeModels();
  try {
    await init();
  } catch (e) {
    $("backend").textContent = "not loaded";
    showError(`The page's wasm module could not start: ${message(e)}`);
    return;
  }
  await loadModel($("model").value);
}

main();
