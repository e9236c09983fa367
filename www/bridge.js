// The page's side of the workers (worker.js), which host the wasm module: requests with an id,
// answered by a promise; progress comes back with the id. app.js and folder.js share it.

// Each loaded model lives in a worker of its own. WebAssembly memory only ever grows: a model
// freed inside a long-lived module leaves its high-water mark behind, and switching models and
// backends back and forth fragments it further. So a load starts a new worker while the old
// one keeps answering; once the new one is ready, the old one is told to skip its pending
// explanations and is ended as soon as it has answered what it was asked, which gives all of
// its memory back. A load that fails ends its own worker and leaves the old one serving.

const listeners = new Set();
let serving = null; // the host answering requests (null before the first model is loaded)
let candidate = null; // the host loading the newest model, until it is ready
let nextId = 0;
const RETIRE_MS = 60_000; // the longest a replaced worker may take to finish what it was asked

/** One worker and the requests it has not answered yet. */
class Host {
  constructor() {
    this.worker = new Worker(new URL("worker.js", import.meta.url), { type: "module" });
    this.pending = new Map();
    this.retiring = false;
    this.worker.onmessage = ({ data }) => this.receive(data);
    this.worker.onerror = (e) => {
      e.preventDefault();
      if (this === serving) listeners.forEach((f) => f({ type: "stopped", message: e.message ?? "it could not start" }));
      this.end(new Error(`the worker stopped: ${e.message ?? "it could not start"}`));
    };
  }

  send(id, type, payload, waiting) {
    this.pending.set(id, waiting);
    this.worker.postMessage({ id, type, ...payload });
  }

  receive(data) {
    if (data.type === "backend") return this === serving && listeners.forEach((f) => f(data));
    const waiting = this.pending.get(data.id);
    if (!waiting) return;
    if (data.type === "progress") return waiting.onProgress?.(data);
    this.pending.delete(data.id);
    if (data.type === "error") waiting.reject(new Error(data.message));
    else waiting.resolve(data);
    if (this.retiring && this.pending.size === 0) this.end();
  }

  /** No longer serving: end the worker once it has answered what it was asked (within a minute). */
  retire() {
    this.retiring = true;
    this.worker.postMessage({ type: "retire" });
    if (this.pending.size === 0) this.end();
    else setTimeout(() => this.end(new Error("another model answers now")), RETIRE_MS);
  }

  /** End the worker now; what it had not answered fails with `error`. */
  end(error = new Error("the worker was ended")) {
    this.worker.terminate();
    if (this === serving) serving = null;
    if (this === candidate) candidate = null;
    const unanswered = [...this.pending.values()];
    this.pending.clear();
    unanswered.forEach((waiting) => waiting.reject(error));
  }
}

// A load in a new worker, which serves from the moment its model is ready.
function load(id, payload, waiting) {
  candidate?.end(new Error("a newer model was chosen"));
  const host = (candidate = new Host());
  host.send(id, "load", payload, {
    ...waiting,
    resolve: (data) => {
      if (host !== candidate) return waiting.reject(new Error("a newer model was chosen"));
      candidate = null;
      serving?.retire();
      serving = host;
      waiting.resolve(data);
    },
    reject: (error) => {
      if (host === candidate) host.end();
      waiting.reject(error);
    },
  });
}

/** Send a request; `onProgress` gets its progress messages. */
export function request(type, payload = {}, onProgress = null) {
  const id = ++nextId;
  return new Promise((resolve, reject) => {
    const waiting = { resolve, reject, onProgress };
    if (type === "load") load(id, payload, waiting);
    else if (serving) serving.send(id, type, payload, waiting);
    else if (type === "inspect") resolve({ unchecked: true }); // checked on classify instead
    else reject(new Error("no model is loaded yet"));
  });
}

/** Messages not answering a request (`backend`), and the serving worker stopping (`{type: "stopped"}`). */
export function listen(f) {
  listeners.add(f);
}

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
