// The instructrec page: plain DOM calls against the same server's JSON API.
// URL parameters (user, q, preference, context, k, refine) fill the form; with autorun=1 the
// page asks at once and then sends `refine` as a follow-up, so it can be driven headless.
"use strict";

const $ = (id) => document.getElementById(id);
let currentUser = null;
let session = null;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// A server started with a token (required beyond loopback) wants it on every API call. The
// page takes it from the address's fragment (`#token=...`, which browsers never send to the
// server, so it stays out of its logs) or asks once, and keeps it for this tab only.
function savedToken() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    sessionStorage.setItem("token", fromUrl);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("token");
}

async function api(path, options = {}, asked = false) {
  const headers = Object.assign({}, options.headers);
  const token = savedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401 && !asked) {
    const entered = window.prompt("This server needs its access token:");
    if (entered && entered.trim()) {
      sessionStorage.setItem("token", entered.trim());
      return api(path, options, true);
    }
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    throw new Error(`${path}: HTTP ${response.status} without a JSON body`);
  }
  if (!response.ok) {
    // Errors are {"error": {"code", "message", "field"}}; the message is written for people.
    const message = body && body.error && body.error.message;
    throw new Error(message || `${path}: HTTP ${response.status}`);
  }
  return body;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
}

async function searchUsers() {
  const q = $("user-search").value.trim();
  try {
    const body = await api(`/v1/users?limit=20&q=${encodeURIComponent(q)}`);
    const list = $("user-options");
    list.replaceChildren();
    for (const u of body.users) {
      const option = document.createElement("option");
      option.value = u.original_id;
      option.label = `${u.interactions} interactions`;
      list.appendChild(option);
    }
  } catch (e) {
    showError(e.message);
  }
}

async function chooseUser(id) {
  showError("");
  session = null;
  const history = $("history");
  history.replaceChildren();
  if (!id) {
    currentUser = null;
    $("user-label").textContent = "No user: recommendations use only what you type.";
    return;
  }
  const body = await api(`/v1/users/${encodeURIComponent(id)}`);
  currentUser = body.original_id;
  $("user-label").textContent = `User ${body.original_id}: ${body.history.length} items, oldest first.`;
  for (const item of body.history) {
    const li = document.createElement("li");
    li.className = "history-item";
    li.textContent = `${item.title} (${item.categories.join(" > ")})`;
    history.appendChild(li);
  }
}

function render(answer) {
  $("answer").hidden = false;
  $("meta").textContent =
    `Template ${answer.template} (${answer.scenario}); ${answer.scored} candidates scored` +
    (answer.matcher ? `, ${answer.matched} from ${answer.matcher}` : " from the request") +
    (answer.refined ? "; refined follow-up" : "") +
    `; ${answer.timings.total_ms.toFixed(0)} ms.`;
  $("instruction").textContent = answer.instruction;
  const body = $("results").tBodies[0];
  body.replaceChildren();
  for (const item of answer.items) {
    const row = document.createElement("tr");
    row.className = "result";
    row.dataset.itemId = item.item_id;
    cell(row, item.rank);
    cell(row, item.title, "title");
    cell(row, item.categories.join(" > "), "categories");
    cell(row, item.brand || "");
    cell(row, item.score.toFixed(3), "score");
    body.appendChild(row);
  }
  document.body.dataset.refined = answer.refined ? "yes" : "no";
}

function optional(id) {
  const value = $(id).value.trim();
  return value ? value : undefined;
}

async function ask(refineText) {
  showError("");
  const request = { k: Number($("k").value) || 10 };
  if (refineText !== undefined) {
    request.session = session;
    request.refine = true;
    request.intention = refineText;
  } else {
    request.intention = optional("intention");
    request.preference = optional("preference");
    request.context = optional("context");
    if (currentUser) request.user = currentUser;
  }
  document.body.dataset.state = "busy";
  try {
    const answer = await api("/v1/recommend", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    session = answer.session;
    render(answer);
  } catch (e) {
    showError(e.message);
    throw e;
  } finally {
    document.body.dataset.state = "idle";
  }
}

$("user-search").addEventListener("input", searchUsers);
$("user-form").addEventListener("submit", (e) => {
  e.preventDefault();
  chooseUser($("user-search").value.trim()).catch((err) => showError(err.message));
});
$("no-user").addEventListener("click", () => {
  $("user-search").value = "";
  chooseUser(null);
});
$("ask-form").addEventListener("submit", (e) => {
  e.preventDefault();
  ask().catch(() => {});
});
$("refine-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("refine").value.trim();
  if (!text) return showError("Type how to refine the answer.");
  if (!session) return showError("Ask first, then refine.");
  ask(text).catch(() => {});
});

async function start() {
  const params = new URLSearchParams(location.search);
  for (const [param, id] of [["q", "intention"], ["preference", "preference"], ["context", "context"], ["k", "k"], ["refine", "refine"]]) {
    if (params.has(param)) $(id).value = params.get(param);
  }
  if (params.get("user")) {
    $("user-search").value = params.get("user");
    await chooseUser(params.get("user"));
  }
  searchUsers();
  if (params.get("autorun") === "1") {
    await ask();
    if (params.get("refine")) await ask(params.get("refine"));
    document.body.dataset.state = "done";
  }
}

start().catch((e) => {
  showError(e.message);
  document.body.dataset.state = "failed";
});
