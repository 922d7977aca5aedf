// kvq annotate, rater page. Flow per image: a glance at the whole image, then each of the 49
// cells alone (the others covered), scored 1–5 in steps of 0.5. Each score is PUT to the server
// the moment it is given; the page keeps no state of its own that a reload could lose.
"use strict";

const SCORES = [1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5];
const token = tokenFromFragment();
const canvas = $("view");

let campaign = null; // /api/rater/state
let image = null; // {id, order, scores, bitmap}
let pos = 0; // index into image.order of the cell on screen
let pending = null; // score picked with the keyboard, not yet saved
let phase = "loading"; // loading | glance | rate | saving | done

function setPhase(p) {
  phase = p;
  document.body.dataset.phase = p;
  for (const b of $("scale").children) b.disabled = p !== "rate";
}

function api(path, options = {}) { return apiRequest(token, path, options); }

function currentCell() { return image.order[pos]; }

function where(cell) { return `row ${Math.floor(cell / 7) + 1}, column ${(cell % 7) + 1}`; }

function doneTotal() { return campaign.images.reduce((n, im) => n + im.done, 0); }

function renderProgress() {
  const total = campaign.images.length * 49;
  const done = doneTotal();
  let here = "";
  if (image) {
    const index = campaign.images.findIndex((im) => im.id === image.id) + 1;
    here = `Image ${index} of ${campaign.images.length} · ` +
      `${Object.keys(image.scores).length} of 49 regions of this image · `;
  }
  $("progress").innerHTML = "";
  const text = document.createElement("span");
  text.id = "progress-text";
  const pct = total ? Math.floor((100 * done) / total) : 100;
  text.textContent = `${here}${done} of ${total} overall (${pct}%)`;
  const bar = document.createElement("progress");
  bar.max = total;
  bar.value = done;
  $("progress").append(text, bar);
}

function layoutCanvas() {
  const { width, height } = image.bitmap;
  const maxW = Math.max(200, Math.min(window.innerWidth - 420, 1100));
  const maxH = Math.max(200, window.innerHeight - 120);
  const scale = Math.min(maxW / width, maxH / height, 8);
  const ratio = window.devicePixelRatio || 1;
  canvas.style.width = `${Math.round(width * scale)}px`;
  canvas.style.height = `${Math.round(height * scale)}px`;
  canvas.width = Math.round(width * scale * ratio);
  canvas.height = Math.round(height * scale * ratio);
}

// Cell (r, c) covers image rows [r·H/7, (r+1)·H/7) and columns [c·W/7, (c+1)·W/7).
function cellBox(cell, w, h) {
  const r = Math.floor(cell / 7), c = cell % 7;
  const x0 = Math.round((c * w) / 7), x1 = Math.round(((c + 1) * w) / 7);
  const y0 = Math.round((r * h) / 7), y1 = Math.round(((r + 1) * h) / 7);
  return [x0, y0, x1 - x0, y1 - y0];
}

function draw(cellOnly) {
  const ctx = canvas.getContext("2d");
  const { width, height } = image.bitmap;
  const sx = canvas.width / width, sy = canvas.height / height;
  if (cellOnly === null) {
    ctx.drawImage(image.bitmap, 0, 0, canvas.width, canvas.height);
    return;
  }
  ctx.fillStyle = "#808080";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "rgba(255,255,255,0.25)";
  ctx.lineWidth = 1;
  for (let k = 1; k < 7; k++) {
    const x = Math.round((k * canvas.width) / 7) + 0.5, y = Math.round((k * canvas.height) / 7) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, canvas.height); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(canvas.width, y); ctx.stroke();
  }
  const [x, y, w, h] = cellBox(cellOnly, width, height);
  ctx.drawImage(image.bitmap, x, y, w, h, x * sx, y * sy, w * sx, h * sy);
  ctx.strokeStyle = "#ffd54a";
  ctx.lineWidth = 2;
  ctx.strokeRect(x * sx - 1, y * sy - 1, w * sx + 2, h * sy + 2);
}

function renderCell() {
  const cell = currentCell();
  canvas.dataset.cell = String(cell);
  canvas.dataset.image = String(image.id);
  const saved = image.scores[cell];
  pending = saved === undefined ? null : saved;
  draw(cell);
  $("instruction").textContent = `Region at ${where(cell)}. How good is its quality?`;
  renderScale();
  renderProgress();
}

function renderScale() {
  const saved = image.scores[currentCell()];
  for (const b of $("scale").children) {
    const s = Number(b.dataset.score);
    b.classList.toggle("pending", s === pending);
    b.classList.toggle("saved", s === saved);
    b.setAttribute("aria-pressed", String(s === pending));
  }
}

function firstUnrated(from) {
  for (let k = 0; k < 49; k++) {
    const i = (from + k) % 49;
    if (image.scores[image.order[i]] === undefined) return i;
  }
  return -1;
}

async function save(score) {
  if (phase !== "rate") return;
  const cell = currentCell();
  setPhase("saving");
  $("save-status").className = "";
  $("save-status").textContent = "Saving…";
  try {
    const res = await api(`/api/rater/images/${image.id}/cells/${cell}`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ score }),
    });
    const body = await res.json();
    image.scores[cell] = score;
    campaign.images.find((im) => im.id === image.id).done = body.image_done;
    $("save-status").textContent = `Saved ${score} for the region at ${where(cell)}.`;
  } catch (err) {
    $("save-status").className = "error";
    $("save-status").textContent = `Not saved (${err.message}). Try again.`;
    setPhase("rate");
    return;
  }
  const next = firstUnrated((pos + 1) % 49);
  if (next < 0) {
    await openNextImage().catch((err) => showMessage(`Cannot load the next image: ${err.message}`));
    return;
  }
  pos = next;
  setPhase("rate");
  renderCell();
}

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

async function glance(seconds) {
  setPhase("glance");
  draw(null);
  $("instruction").textContent = "Look at the whole image. Its regions follow one at a time.";
  const timer = $("glance-timer");
  timer.hidden = false;
  const end = performance.now() + seconds * 1000;
  for (let left = seconds; left > 0; left = (end - performance.now()) / 1000) {
    timer.textContent = `Whole image: ${Math.ceil(left)} s`;
    await sleep(Math.min(250, left * 1000));
  }
  timer.hidden = true;
}

async function openNextImage() {
  const next = campaign.images.find((im) => im.done < 49);
  if (!next) {
    image = null;
    setPhase("done");
    $("stage").hidden = true;
    $("done").hidden = false;
    renderProgress();
    return;
  }
  setPhase("loading");
  const info = await (await api(`/api/rater/images/${next.id}`)).json();
  const blob = await (await api(`/api/rater/images/${next.id}/file`)).blob();
  image = { id: info.id, order: info.order, scores: {}, bitmap: await createImageBitmap(blob) };
  for (const [cell, score] of Object.entries(info.scores)) image.scores[Number(cell)] = score;
  next.done = Object.keys(image.scores).length;
  canvas.dataset.image = String(image.id);
  delete canvas.dataset.cell;
  $("stage").hidden = false;
  layoutCanvas();
  renderProgress();
  await glance(campaign.glance_seconds);
  pos = firstUnrated(0);
  setPhase("rate");
  renderCell();
}

function buildPanel() {
  for (const s of SCORES) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = String(s);
    b.dataset.score = String(s);
    b.addEventListener("click", () => save(s));
    $("scale").append(b);
  }
  for (const { score, label } of campaign.scale) {
    const span = document.createElement("span");
    span.textContent = `${score} ${label}`;
    $("scale-labels").append(span);
  }
  for (const { name, text } of campaign.criteria) {
    const li = document.createElement("li");
    const b = document.createElement("b");
    b.textContent = `${name}: `;
    li.append(b, text);
    $("criteria").append(li);
  }
}

function step(delta) {
  const base = pending === null ? 3 : pending;
  pending = Math.min(5, Math.max(1, base + delta));
  renderScale();
}

document.addEventListener("keydown", (ev) => {
  if (phase !== "rate" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const key = ev.key;
  if (/^[1-5]$/.test(key)) pending = Number(key);
  else if (key === "ArrowUp" || key === "+" || key === "=") { step(0.5); }
  else if (key === "ArrowDown" || key === "-") { step(-0.5); }
  else if (key === "Enter" || key === " ") {
    if (pending !== null) save(pending);
  } else if (key === "ArrowLeft" || key === "Backspace") {
    if (pos > 0) { pos -= 1; renderCell(); }
  } else return;
  ev.preventDefault();
  renderScale();
});

window.addEventListener("resize", () => {
  if (!image) return;
  layoutCanvas();
  draw(phase === "glance" ? null : currentCell());
});

async function main() {
  if (!token) {
    showMessage("This page needs your private link (it ends in #token=…). Ask the study admin.");
    return;
  }
  try {
    campaign = await (await api("/api/rater/state")).json();
    buildPanel();
    await openNextImage();
  } catch (err) {
    showMessage(`Cannot load the study: ${err.message}`);
  }
}

main();
