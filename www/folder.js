// Folder mode: every picture + caption pair of a folder in the lab's layout (or of chosen
// files with same-named captions), classified one after another in the worker, with a
// progress bar, a table that sorts and filters, accuracy and a confusion matrix where the
// folder has labels, and a `guid,tag` download in the lab's format (what the native
// `predict --list` writes for the folder's list).

import { $, confusionTable, message, pct, request } from "./bridge.js";

const PICTURE = /\.(jpe?g|png|webp|gif)$/i;
const LISTS = ["test_without_label.txt", "train.txt"];
let run = 0; // generation of the newest folder run: Stop or a new folder ends the older
let rows = []; // {guid, label, fused, truth, caption, notes}
let listed = []; // the guids the download lists, in the list's order
let listName = null; // the list those come from (test_without_label.txt, train.txt), if any
let planned = 0; // pairs the newest run was to classify
let running = false;
let sort = { key: "guid", up: true };

const base = (name) => name.replace(/^.*\//, "");
const count = (n, what) => `${n.toLocaleString("en")} ${what}${n === 1 ? "" : "s"}`;
const stem = (name) => base(name).replace(/\.[^.]*$/, "");

/** A `guid,tag` list's rows (header optional, CRLF or LF, blank lines ignored), as the
 * native `data::read_list` reads them. */
function parseList(text, name) {
  const out = [];
  text.replace(/^\uFEFF/, "").split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const fields = line.split(",").map((f) => f.trim());
    if (i === 0 && fields[0] === "guid") return;
    if (fields.length !== 2 || !/^[A-Za-z0-9_-]+$/.test(fields[0])) {
      throw new Error(`${name}:${i + 1}: expected guid,tag, found ${JSON.stringify(line)}`);
    }
    out.push({ guid: fields[0], tag: fields[1] });
  });
  return out;
}

/** The pairs of the chosen files: {pairs: Map guid → {image, caption}, lists: {name: rows}}. */
async function gather(files) {
  const pairs = new Map();
  const lists = {};
  const entry = (guid) => pairs.get(guid) ?? pairs.set(guid, {}).get(guid);
  for (const file of files) {
    const name = base(file.webkitRelativePath || file.name);
    if (LISTS.includes(name)) lists[name] = parseList(await file.text(), name);
    else if (PICTURE.test(name)) entry(stem(name)).image = file;
    else if (/\.txt$/i.test(name)) entry(stem(name)).caption = file;
  }
  return { pairs, lists };
}

/** Which guids to classify, in order: the lists' (test list first), else every pair. */
function order(pairs, lists) {
  const fromLists = LISTS.flatMap((name) => (lists[name] ?? []).map((r) => r.guid));
  const guids = fromLists.length ? [...new Set(fromLists)] : [...pairs.keys()].filter((g) => pairs.get(g).image || pairs.get(g).caption);
  const numeric = (a, b) => a.localeCompare(b, "en", { numeric: true });
  return fromLists.length ? guids : guids.sort(numeric);
}

async function classifyFolder(files) {
  const generation = ++run;
  if (running) stop(); // the run before this one ends here, its results as they stand
  $("folder-error").hidden = true;
  const { pairs, lists } = await gather(files);
  const labelOf = new Map((lists["train.txt"] ?? []).map((r) => [r.guid, r.tag]));
  const guids = order(pairs, lists);
  if (!guids.length) return folderError("no pictures or captions in what was chosen");
  if (generation !== run) return;
  listed = (lists["test_without_label.txt"] ?? lists["train.txt"])?.map((r) => r.guid) ?? guids;
  listName = lists["test_without_label.txt"] ? "test_without_label.txt" : lists["train.txt"] ? "train.txt" : null;
  rows = [];
  planned = guids.length;
  running = true;
  $("folder-results").hidden = true;
  $("folder-progress").hidden = false;
  $("folder-stop").hidden = false;
  const loaded = document.body.dataset.readyAt; // the model (and backend) answering the run
  const started = performance.now();
  for (const [i, guid] of guids.entries()) {
    if (generation !== run) return;
    if (document.body.dataset.readyAt !== loaded) return stop(folderError("another model was loaded during the run: choose the folder again to classify it with one model"));
    const pair = pairs.get(guid);
    if (!pair) return stop(folderError(`${listName ?? "the list"} names guid ${guid}, but there is no ${guid}.jpg or ${guid}.txt`));
    try {
      const image = pair.image ? await pair.image.arrayBuffer() : null;
      const caption = pair.caption ? await pair.caption.arrayBuffer() : null;
      const r = await request("pair", { image, caption }, null);
      if (generation !== run) return;
      rows.push({ guid, ...r, truth: labelOf.get(guid) ?? null });
    } catch (e) {
      return stop(folderError(`guid ${guid}: ${message(e)}`));
    }
    $("folder-bar").value = (i + 1) / guids.length;
    $("folder-count").textContent = `${i + 1} of ${count(guids.length, "pair")}${left(started, i + 1, guids.length)}`;
    if (i % 25 === 0) showRows();
  }
  stop();
}

/** About how long the rest of a run takes, from the pace so far. */
function left(started, done, total) {
  if (done < 5 || done === total) return "";
  const seconds = ((performance.now() - started) / done) * (total - done) / 1000;
  return seconds < 60 ? `, about ${Math.ceil(seconds / 5) * 5} s left` : `, about ${Math.round(seconds / 60)} min left`;
}

/** The run is over (finished, stopped, or failed): the results as they stand, every count
 * from the same rows. */
function stop() {
  running = false;
  $("folder-stop").hidden = true;
  $("folder-progress").hidden = rows.length === 0;
  if (rows.length) {
    $("folder-count").textContent = `${rows.length} of ${count(planned, "pair")}`;
    showRows();
  }
}

function folderError(text) {
  $("folder-error").textContent = text;
  $("folder-error").hidden = false;
}

/** The summary, the confusion matrix (labelled pairs) and the table, as they stand. */
function showRows() {
  $("folder-results").hidden = false;
  const labels = rows[0]?.labels ?? [];
  const labelled = rows.filter((r) => labels.includes(r.truth));
  const notes = rows.filter((r) => r.notes?.length).length;
  const partial = rows.length < planned;
  const parts = [partial ? `${rows.length} of ${count(planned, "pair")} classified${running ? "" : " (stopped)"}` : `${count(rows.length, "pair")} classified`];
  if (labelled.length) {
    const right = labelled.filter((r) => r.truth === r.label).length;
    parts.push(`accuracy ${pct(right / labelled.length)} on the ${labelled.length} labelled ones (train.txt)`);
  }
  if (notes) parts.push(`${count(notes, "pair")} with a note (a part missing or unreadable, or a caption read in part or not at all)`);
  $("folder-summary").textContent = `${parts.join("; ")}.`;
  showDownload();
  const counts = labels.map((t) => labels.map((p) => labelled.filter((r) => r.truth === t && r.label === p).length));
  $("folder-confusion").replaceChildren(
    ...(labelled.length ? [confusionTable(labels, counts, "Confusion on this folder's labelled pairs")] : []),
  );
  showTable();
}

function showTable() {
  const filter = $("folder-filter").value;
  const keep = (r) => (filter === "all" ? true : filter === "wrong" ? r.truth && r.truth !== r.label : r.label === filter);
  const value = (r) => (sort.key === "confidence" ? Math.max(...r.fused) : r[sort.key] ?? "");
  const cmp = (a, b) => {
    const [x, y] = [value(a), value(b)];
    const c = typeof x === "number" ? x - y : String(x).localeCompare(String(y), "en", { numeric: true });
    return sort.up ? c : -c;
  };
  const body = $("folder-table").tBodies[0];
  body.replaceChildren(
    ...rows.filter(keep).sort(cmp).map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.guid = r.guid;
      tr.dataset.label = r.label;
      const said = (r.notes ?? []).map((n) => n.text).join("; ");
      const cells = [r.guid, r.label, pct(Math.max(...r.fused)), r.truth ?? "—", said ? `${said} · ${r.caption}` : r.caption];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      if (r.truth && r.truth !== r.label) tr.className = "wrong";
      return tr;
    }),
  );
  for (const th of $("folder-table").tHead.querySelectorAll("button")) {
    const on = th.dataset.sort === sort.key;
    th.parentElement.setAttribute("aria-sort", on ? (sort.up ? "ascending" : "descending") : "none");
  }
}

/** The guids of the list that were not classified (a stopped run). */
const missing = () => {
  const done = new Set(rows.map((r) => r.guid));
  return listed.filter((g) => !done.has(g));
};

/** Download is offered once a run is over; for a stopped one it says what the file lacks. */
function showDownload() {
  const lacking = missing().length;
  const of = listName ? ` (${listName})` : "";
  $("folder-download").hidden = running;
  $("folder-download").textContent = lacking ? `Download the partial guid,tag${of}` : `Download guid,tag${of}`;
  $("folder-partial").hidden = running || !lacking;
  $("folder-partial").textContent = lacking
    ? `The run ended early: the file would lack ${count(lacking, "guid")} of the ${listed.length.toLocaleString("en")} listed${listName ? ` in ${listName}` : ""}. Choose the folder again for all of them.`
    : "";
}

/** `guid,tag` for the list's guids, in its order: the lab's submission format. A stopped
 * run's file is named as partial. */
function download() {
  const byGuid = new Map(rows.map((r) => [r.guid, r.label]));
  const csv = ["guid,tag", ...listed.filter((g) => byGuid.has(g)).map((g) => `${g},${byGuid.get(g)}`)].join("\n");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([`${csv}\n`], { type: "text/csv" }));
  link.download = missing().length ? "predictions-partial.txt" : "predictions.txt";
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

export function wireFolder() {
  // Buttons (reachable by keyboard) open the hidden file inputs.
  $("choose-folder").addEventListener("click", () => $("folder").click());
  $("choose-files").addEventListener("click", () => $("files").click());
  for (const id of ["folder", "files"]) {
    $(id).addEventListener("change", () => {
      const files = [...$(id).files];
      $(id).value = ""; // the same folder can be chosen again
      if (files.length) classifyFolder(files).catch((e) => folderError(message(e)));
    });
  }
  $("folder-stop").addEventListener("click", () => {
    run++;
    stop();
  });
  $("folder-filter").addEventListener("change", showTable);
  $("folder-download").addEventListener("click", download);
  for (const button of $("folder-table").tHead.querySelectorAll("button")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      sort = { key, up: sort.key === key ? !sort.up : true };
      showTable();
    });
  }
}
