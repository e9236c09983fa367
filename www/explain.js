// Draws an explanation (worker request "explain", Rust's occlusion in crates/model/src/
// explain.rs): each word tinted by how much hiding it lowers the answer's probability, and a
// heat map of the same over the squares of the picture the model sees.

import { $ } from "./bridge.js";

const COLOURS = { negative: "209, 91, 75", neutral: "138, 148, 173", positive: "63, 155, 92" };

/** The effect of a part on the answer's probability, as a tint: the label's colour where it
 * pushed toward the answer, grey where it pushed away; `scale` is the largest effect. */
function tint(effect, label, scale) {
  const strength = Math.min(1, Math.abs(effect) / scale);
  const rgb = effect > 0 ? COLOURS[label] ?? "75, 108, 209" : "120, 120, 120";
  return `rgba(${rgb}, ${(0.85 * strength).toFixed(3)})`;
}

const signed = (x) => `${x >= 0 ? "+" : "−"}${Math.abs(x * 100).toFixed(1)} points`;

/** Show `explanation` for the answer `label`; `pictureUrl` is the picture that was classified. */
export function showExplanation(explanation, label, pictureUrl) {
  const k = explanation.labels.indexOf(label);
  const effects = [
    ...explanation.words.filter((w) => w.effect).map((w) => w.effect[k]),
    ...(explanation.picture?.cells ?? []).map((c) => c[k]),
  ];
  const scale = Math.max(0.01, ...effects.map(Math.abs));
  $("why-label").textContent = label;
  showWords(explanation.words, k, label, scale);
  showPicture(explanation.picture, k, label, scale, pictureUrl);
  $("why-status").hidden = true;
  $("why-help").hidden = false;
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
    if (w.effect) {
      const effect = w.effect[k];
      span.dataset.effect = String(effect);
      span.style.background = tint(effect, label, scale);
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
  $("why-words").replaceChildren();
  $("why-picture").hidden = true;
}
