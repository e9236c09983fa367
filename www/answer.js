// Draws an answer (worker request "classify"): the label, the three sets of bars, what the
// answer used of what it was given, and the notes the model crate attached (a caption in a
// script the model cannot read, a caption longer than it reads). Then brings it into view.

import { $ } from "./bridge.js";

/** The bars of one part: `probs` in `labels`' order, or a line saying why there are none. */
function bars(id, labels, probs, missing) {
  const box = $(id);
  box.querySelectorAll(".bar, .none").forEach((el) => el.remove());
  if (!probs) {
    const none = document.createElement("p");
    none.className = "none";
    none.textContent = missing;
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

/** What the answer rests on, in words, from what was sent (`sent.picture`, `sent.caption`)
 * and the parts that came back. */
function used(sent, r) {
  const picture = Boolean(r.image);
  const caption = Boolean(r.text);
  if (picture && caption) return "From the picture and the caption.";
  if (picture) {
    return sent.caption ? "From the picture alone: the caption was not read (see below)." : "From the picture alone: no caption was given.";
  }
  return sent.picture ? "From the caption alone: the picture was not used (see below)." : "From the caption alone: no picture was given.";
}

/** Show the answer `r` to the input `sent` ({picture, caption}: what the user gave). */
export function showAnswer(r, sent) {
  $("label").textContent = r.label;
  $("used").textContent = used(sent, r);
  const notes = r.notes ?? [];
  $("notes").replaceChildren(
    ...notes.map((n) => {
      const li = document.createElement("li");
      li.textContent = n.text;
      li.dataset.kind = n.kind;
      return li;
    }),
  );
  $("notes").hidden = notes.length === 0;
  const foreign = notes.some((n) => n.kind === "caption-foreign");
  bars("fused", r.labels, r.fused, "");
  bars("image", r.labels, r.image, "not given");
  bars("text", r.labels, r.text, foreign ? "not read: in a script the model cannot read" : "not given");
  $("text").classList.toggle("unreliable", foreign && Boolean(r.text));
  $("result").hidden = false;
}

const reducedMotion = () => matchMedia("(prefers-reduced-motion: reduce)").matches;

/** Scroll the answer into view where it is not wholly in view (a phone, a sample far below). */
export function revealAnswer() {
  const box = $("result").getBoundingClientRect();
  if (box.top >= 0 && box.bottom <= innerHeight) return;
  $("result").scrollIntoView({ block: "start", behavior: reducedMotion() ? "auto" : "smooth" });
}
