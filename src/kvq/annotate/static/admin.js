// kvq annotate, admin page: completion per rater, new rater links, exports.
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
$("show-report").addEventListener("click", async () => {
  try {
    const report = await (await api(`/api/admin/export/report?${exportQuery()}`)).json();
    $("report").textContent = JSON.stringify(report, null, 2);
    $("report").hidden = false;
  } catch (err) {
    showMessage(err.message);
  }
});

start();
