// The models the page offers (www/models.json, written by the trainer): the Model menu, each
// model's figures and confusion matrix, which models this browser holds for offline use, and
// the loading progress of the engine and a model's files as one bar.

import { $, confusionTable, pct } from "./bridge.js";

export const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
export const downloadBytes = (m) => Object.values(m.files).reduce((a, b) => a + b, 0);

/** The manifest's models, and the Model menu filled from it: each choice states what it
 * costs to download and how accurate it is expected to be (the menu's tooltip says how). */
export async function loadManifest() {
  const response = await fetch(new URL("models.json", import.meta.url));
  if (!response.ok) throw new Error(`www/models.json: HTTP ${response.status}`);
  const models = (await response.json()).models;
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.id;
    const how = m.validation.folds ? "expected accuracy, cross-validated" : "validation accuracy";
    option.textContent = `${m.title} — ${megabytes(downloadBytes(m))}, ${pct(m.validation.accuracy)}`;
    option.title = `${option.textContent} ${how}`;
    $("model").append(option);
  }
  const crossValidated = models.every((m) => m.validation.folds);
  $("model").title = `Download size and ${crossValidated ? "expected accuracy (cross-validated)" : "validation accuracy"}`;
  return models;
}

/** What `model` is expected to score on new pairs, and where its errors go (metrics.json). */
export async function showMetrics(model) {
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
    const note = document.createElement("p");
    note.textContent = "The confusion matrix could not be fetched (offline?).";
    $("confusion").replaceChildren(note);
  }
}

/** The models whose every file this browser has cached (the worker keeps one cache a model;
 * a download that failed may have left its cache half full). */
export async function cachedModels(models) {
  const names = await caches.keys().catch(() => []);
  const held = [];
  for (const m of models) {
    const name = names.find((n) => n.startsWith(`mvsa:${m.id}:`));
    if (!name) continue;
    const files = (await (await caches.open(name)).keys()).map((r) => r.url.split("/").pop());
    if (Object.keys(m.files).every((f) => files.includes(f))) held.push(m);
  }
  return held;
}

/** Whether `error` (a failed load) came from having no network. */
export const offline = (error) => !navigator.onLine || /Failed to fetch|NetworkError|network error/i.test(String(error?.message ?? error));

const STAGES = {
  download: "Downloading the engine and the model",
  preparing: "Preparing the model",
  warming: "Warming up",
};

/** One bar for a load: the engine's and the model's downloads (which run side by side)
 * summed, then the stages after them. */
export class LoadProgress {
  constructor(model) {
    this.parts = { model: { loaded: 0, total: downloadBytes(model), fromCache: false } };
    this.shown = 0; // the bar never moves back when the engine's size becomes known
    this.show({ stage: "model", loaded: 0, total: downloadBytes(model) });
  }

  show({ stage, loaded, total, fromCache }) {
    if (stage === "engine" || stage === "model") {
      this.parts[stage] = { loaded, total: Math.max(total || 0, loaded), fromCache };
      const sum = (k) => Object.values(this.parts).reduce((a, p) => a + p[k], 0);
      const [done, all] = [sum("loaded"), sum("total")];
      $("progress-label").textContent = this.parts.engine ? STAGES.download : "Downloading the model";
      this.shown = Math.max(this.shown, all ? done / all : 0);
      $("progress").value = this.shown;
      const cached = this.parts.model.fromCache ? " (the model from this browser's cache)" : "";
      $("progress-text").textContent = `${megabytes(done)} of ${megabytes(all)}${cached}`;
      return;
    }
    $("progress-label").textContent = STAGES[stage] ?? stage;
    $("progress").removeAttribute("value"); // indeterminate while preparing
    $("progress-text").textContent = "";
  }
}
