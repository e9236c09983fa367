// Draws an explanation (worker request "explain", Rust's occlusion in crates/model/src/
// explain.rs): each word tinted by how much hiding it lowers the answer's probability, and a
// heat map of the same over the squares of the picture the model sees; the strongest effects
// also in words (for screen readers, and for anyone), and the words the model did not read
// (past its token limit) marked as such.

import { $ } from "./bridge.js";

const COLOURS = { negative: "209, 91, 75", neutral: "138, 148, 173", positive: "63, 155, 92" };
// Pushing away from the answer: purple, unlike any label's colour (and dotted, not only a hue).
const AWAY = "155, 89, 182";
const dark = () => matchMedia("(prefers-color-scheme: dark)").matches;

/** The effect of a part on the answer's probability, as a tint: the label's colour where it
 * pushed toward the answer, purple where it pushed away; `scale` is the largest effect. The
 * strongest tint keeps the text readable (4.5:1) in either colour scheme. */
function tint(effect, label, scale) {
  const strength = Math.min(1, Math.abs(effect) / scale);
  const rgb = effect > 0 ? COLOURS[label] ?? "75, 108, 209" : AWAY;
  const most = dark() ? 0.45 : 0.6;
  return `rgba(${rgb}, ${(most * strength).toFixed(3)})`;
}

const points = (x) => `${Math.abs(x * 100).toFixed(1)} points`;
const signed = (x) => `${x >= 0 ? "+" : "−"}${points(x)}`;

/** Show `explanation` for the answer `label`; `pictureUrl` is the picture that was classified. */
export function showExplanation(explanation, label, pictureUrl) {
  const k = explanation.labels.indexOf(label);
  const effects = [
    ...explanation.words.filter((w) => w.effect).map((w) => w.effect[k]),
    ...(explanation.picture?.cells ?? []).map((c) => c[k]),
  ];
  const scale = Math.max(0.01, ...effects.map(Math.abs));
  $("why-label").textContent = label;
  // The key shows this answer's colour, and the strongest tint of the words and squares.
  document.querySelector("#why-help .key.toward").style.background = tint(1, label, 1);
  document.querySelector("#why-help .key.away").style.background = tint(-1, label, 1);
  const words = explanation.words.length > 0;
  const picture = Boolean(explanation.picture);
  $("why-parts").textContent = words && picture ? "Each word, and each square of the picture," : words ? "Each word" : "Each square of the picture";
  showWords(explanation.words, k, label, scale);
  showPicture(explanation.picture, k, label, scale, pictureUrl);
  $("why-summary").textContent = summary(explanation, k, label);
  $("why-status").hidden = true;
  $("why-help").hidden = false;
}

/** The parts that moved the answer most, in words. */
function summary(explanation, k, label) {
  const parts = [
    ...explanation.words.filter((w) => w.effect).map((w) => ({ name: `“${w.word}”`, effect: w.effect[k] })),
    ...(explanation.picture?.cells ?? []).map((c, i) => {
      const { rows, cols } = explanation.picture;
      const [row, col] = [Math.floor(i / cols) + 1, (i % cols) + 1];
      return { name: `the picture's square at row ${row}, column ${col} of ${rows} × ${cols}`, effect: c[k] };
    }),
  ].filter((p) => Math.abs(p.effect) >= 0.005);
  const list = (ps) => ps.map((p) => `${p.name} (${points(p.effect)})`).join(", ");
  const toward = parts.filter((p) => p.effect > 0).sort((a, b) => b.effect - a.effect).slice(0, 3);
  const away = parts.filter((p) => p.effect < 0).sort((a, b) => a.effect - b.effect).slice(0, 2);
  const said = [];
  if (toward.length) said.push(`Pushed most toward ${label}: ${list(toward)}.`);
  if (away.length) said.push(`Pushed away from it: ${list(away)}.`);
  if (!said.length) said.push("No single part moved the answer by half a point or more.");
  const unread = explanation.words.filter((w) => !w.read).length;
  if (unread) said.push(`${unread === 1 ? "The last word was" : `The last ${unread} words were`} not read (past the model's limit), shown struck through.`);
  return said.join(" ");
}

function showWords(words, k, label, scale) {
  const box = $("why-words");
  box.replaceChildren();
  box.hidden = words.length === 0;
  for (const w of words) {
    box.append(document.createTextNode(w.before));
    const span = document.createElement("span");
    span.className = "word";
    span.textContent = w.word;
    if (!w.read) {
      span.classList.add("unread");
      span.title = "not read: past the model's limit";
    } else if (w.effect) {
      const effect = w.effect[k];
      span.dataset.effect = String(effect);
      span.style.background = tint(effect, label, scale);
      if (effect < 0) span.classList.add("away");
      span.title = `hiding it: ${label} ${signed(-effect)}`;
    }
    box.append(span);
  }
}

function showPicture(picture, k, label, scale, url) {
  $("why-picture").hidden = !picture;
  if (!picture) return;
  const map = $("heatmap");
  map.style.aspectRatio = `${picture.width} / ${picture.height}`;
  // At most 20rem on its longer side; its height follows from the aspect ratio.
  map.style.width = `${Math.min(20, (20 * picture.width) / picture.height).toFixed(3)}rem`;
  map.dataset.width = String(picture.width);
  map.dataset.height = String(picture.height);
  $("heatmap-image").src = url;
  const cells = $("heatmap-cells");
  const [x, y, w, h] = picture.crop;
  Object.assign(cells.style, {
    left: `${x * 100}%`,
    top: `${y * 100}%`,
    width: `${w * 100}%`,
    height: `${h * 100}%`,
    gridTemplateColumns: `repeat(${picture.cols}, 1fr)`,
    gridTemplateRows: `repeat(${picture.rows}, 1fr)`,
  });
  cells.replaceChildren(
    ...picture.cells.map((effect) => {
      const cell = document.createElement("div");
      cell.dataset.effect = String(effect[k]);
      cell.style.background = tint(effect[k], label, scale);
      cell.title = `hiding this square: ${label} ${signed(-effect[k])}`;
      return cell;
    }),
  );
}

/** Before an explanation arrives (or when it fails): the section says so. */
export function explanationPending(shown, failure = null) {
  $("why").hidden = !shown;
  $("why-status").hidden = false;
  $("why-status").textContent = failure ?? "Working out which words and parts of the picture mattered…";
  $("why-help").hidden = true;
  $("why-summary").textContent = "";
  $("why-words").replaceChildren();
  $("why-picture").hidden = true;
}
