// The page's side of the worker (worker.js), which hosts the wasm module: requests with an id,
// answered by a promise; progress comes back with the id. app.js and folder.js share it.

const worker = new Worker(new URL("worker.js", import.meta.url), { type: "module" });
const pending = new Map();
const listeners = new Set();
let nextId = 0;

/** Send a request; `onProgress` gets its progress messages, `onId` its id before it goes. */
export function request(type, payload = {}, onProgress = null, onId = null) {
  const id = ++nextId;
  onId?.(id);
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onProgress });
    worker.postMessage({ id, type, ...payload });
  });
}

/** Messages not answering a request (`backend`), and the worker stopping (`{type: "stopped"}`). */
export function listen(f) {
  listeners.add(f);
}

worker.onmessage = ({ data }) => {
  if (data.type === "backend") return listeners.forEach((f) => f(data));
  const waiting = pending.get(data.id);
  if (!waiting) return;
  if (data.type === "progress") return waiting.onProgress?.(data);
  pending.delete(data.id);
  if (data.type === "error") waiting.reject(new Error(data.message));
  else waiting.resolve(data);
};

worker.onerror = (e) => {
  e.preventDefault();
  listeners.forEach((f) => f({ type: "stopped", message: e.message ?? "it could not start" }));
  for (const waiting of pending.values()) waiting.reject(new Error("the worker stopped"));
  pending.clear();
};

export const $ = (id) => document.getElementById(id);
export const message = (e) => (e instanceof Error ? e.message : String(e));
export const pct = (x) => `${(x * 100).toFixed(1)} %`;

/**
 * A confusion matrix (`counts[true][predicted]`) as a table: rows are the true labels, columns
 * the answers, each cell its count and its share of the row (readable as text on any screen).
 */
export function confusionTable(labels, counts, caption) {
  const table = document.createElement("table");
  table.className = "confusion";
  const head = labels.map((l) => `<th scope="col">${l}</th>`).join("");
  table.innerHTML = `<caption></caption><thead><tr><th scope="col">label ↓ · answer →</th>${head}</tr></thead><tbody></tbody>`;
  table.querySelector("caption").textContent = caption;
  counts.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = labels[i];
    tr.append(th);
    row.forEach((n, j) => {
      const td = document.createElement("td");
      td.textContent = `${n}`;
      td.title = `${n} of ${total} ${labels[i]} pairs answered ${labels[j]}`;
      td.dataset.count = String(n);
      td.style.setProperty("--share", (n / total).toFixed(3));
      if (i === j) td.className = "hit";
      tr.append(td);
    });
    table.tBodies[0].append(tr);
  });
  return table;
}
