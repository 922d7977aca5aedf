// kvq annotate, admin page: completion per rater, new rater links, exports.
// Text from raters or file names only ever goes in through textContent, never as HTML.
"use strict";

let token = tokenFromFragment();

function api(path, options = {}) { return apiRequest(token, path, options); }

function exportQuery() {
  return `screening=${$("screening").checked}&min_raters=${Number($("min-raters").value) || 1}`;
}

async function refresh() {
  const data = await (await api("/api/admin/progress")).json();
  $("summary").textContent = `${data.images} images · ${data.raters.length} raters`;
  const body = $("raters").querySelector("tbody");
  body.innerHTML = "";
  for (const r of data.raters) {
    const tr = document.createElement("tr");
    tr.dataset.rater = r.name;
    const bar = document.createElement("progress");
    bar.max = Math.max(1, r.total);
    bar.value = r.done;
    const pct = r.total ? Math.floor((100 * r.done) / r.total) : 0;
    const reset = document.createElement("button");
    reset.type = "button";
    reset.textContent = "New link";
    reset.addEventListener("click", () => newLink("/api/admin/raters/reset-token", r.name));
    const cells = [r.name, `${r.done} / ${r.total}`, `${r.images_complete} / ${data.images}`];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const tdBar = document.createElement("td");
    tdBar.append(bar, ` ${pct}%`);
    const tdReset = document.createElement("td");
    tdReset.append(reset);
    tr.append(tdBar, tdReset);
    body.append(tr);
  }
}

async function newLink(path, name) {
  try {
    const res = await api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name }),
    });
    const r = await res.json();
    $("new-link-name").textContent = r.name;
    $("new-link-url").textContent = r.link;
    $("new-link").hidden = false;
    showMessage("");
    await refresh();
  } catch (err) {
    showMessage(err.message);
  }
}

async function download(path, filename) {
  try {
    const blob = await (await api(path)).blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = filename;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  } catch (err) {
    showMessage(err.message);
  }
}

async function start() {
  try {
    await refresh();
  } catch (err) {
    $("login").hidden = false;
    showMessage(token ? `Cannot open the admin view: ${err.message}` : "");
    return;
  }
  $("login").hidden = true;
  $("admin").hidden = false;
  setInterval(() => refresh().catch((err) => showMessage(err.message)), 10000);
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token-input").value.trim();
  start();
});
$("add-rater").addEventListener("submit", (ev) => {
  ev.preventDefault();
  newLink("/api/admin/raters", $("rater-name").value);
  $("rater-name").value = "";
});
$("dl-labels").addEventListener("click", () =>
  download(`/api/admin/export/labels?${exportQuery()}`, "lpvq_labels.txt"));
$("dl-ratings").addEventListener("click", () =>
  download("/api/admin/export/ratings.csv", "ratings.csv"));
$("dl-report").addEventListener("click", () =>
  download(`/api/admin/export/report?${exportQuery()}`, "screening.json"));
$("show-report").addEventListener("click", async () => {
  try {
    showReport(await (await api(`/api/admin/export/report?${exportQuery()}`)).json());
    showMessage("");
  } catch (err) {
    showMessage(err.message);
  }
});

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function verdict(rater, screening) {
  if (!screening) return "not screened";
  return rater.rejected ? "rejected" : "kept";
}

// The report of /api/admin/export/report as a table of raters and a list of left-out images.
function showReport(report) {
  const rejected = report.raters.filter((r) => r.rejected).length;
  $("report-summary").textContent = [
    `${report.images_exported} images exported`,
    report.screening ? `${rejected} of ${report.raters.length} raters rejected` : "screening off",
    `at least ${report.min_raters} kept raters per image`,
  ].join(" · ");
  const rows = report.raters.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.rater = r.name;
    const outliers = r.outliers_above + r.outliers_below;
    const share = r.screened_scores ? `${((100 * outliers) / r.screened_scores).toFixed(1)} %` : "–";
    const numbers = [r.images_complete, r.screened_scores, r.outliers_above, r.outliers_below];
    const last = cell(verdict(r, report.screening));
    if (r.rejected) last.className = "rejected";
    tr.append(cell(r.name), ...numbers.map((n) => cell(String(n))), cell(share), last);
    return tr;
  });
  $("report-raters").querySelector("tbody").replaceChildren(...rows);
  const leftOut = Object.entries(report.images_left_out);
  $("report-left-out-title").textContent =
    `${leftOut.length} images left out (fewer than ${report.min_raters} kept raters):`;
  $("report-left-out").querySelector("ul").replaceChildren(...leftOut.map(([name, kept]) => {
    const li = document.createElement("li");
    li.textContent = `${name} (${kept} kept)`;
    return li;
  }));
  $("report-left-out").hidden = leftOut.length === 0;
  $("report").hidden = false;
}

start();
