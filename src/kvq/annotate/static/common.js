// kvq annotate: helpers shared by the rater and admin pages (loaded before either script).
"use strict";

const $ = (id) => document.getElementById(id);

// A request with the bearer token; rejects with "status: detail" when the server says no.
async function apiRequest(token, path, options = {}) {
  const headers = { Authorization: `Bearer ${token}`, ...(options.headers || {}) };
  const res = await fetch(path, { ...options, headers });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${res.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return res;
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

function tokenFromFragment() {
  return new URLSearchParams(location.hash.slice(1)).get("token");
}
