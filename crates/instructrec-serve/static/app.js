// The instructrec page: plain DOM calls against the same server's JSON API.
//
// A person types what they want; the answer comes back as cards (rank, title, categories,
// brand, the normalised relevance and why the item fits); follow-ups refine it and are kept in
// the conversation trail with what changed; the history (most recent first) can be loaded from
// a user, edited (add from the catalogue search, remove) and is sent with every request.
// Placeholders and examples come from the loaded catalogue (GET /v1/examples).
//
// URL parameters (user, q, preference, context, k, refine) fill the form; with autorun=1 the
// page asks at once and then sends `refine` as a follow-up, so it can be driven headless.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  user: null, // the loaded user's source id
  history: [], // items, oldest first (the order the API takes)
  historyEdited: false, // the history differs from the loaded user's stored one
  session: null,
  answer: null,
  turns: [],
  pendingEdits: [], // history edits not yet reflected in an answer
  lastRun: null, // [request, turn] of the last call, for "Try again"
};

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "title") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c) node.appendChild(c);
  return node;
}

// --- talking to the server -------------------------------------------------------------------

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
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (_) {
    throw new Error("The server cannot be reached. Is it still running?");
  }
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
    const error = new Error(message || `${path}: HTTP ${response.status}`);
    error.field = body && body.error && body.error.field;
    throw error;
  }
  return body;
}

// The inputs a refused request's `error.field` can name.
const FIELD_INPUTS = { intention: "intention", preference: "preference", context: "context", k: "k" };

function showError(message, field) {
  $("error-message").textContent = message || "";
  $("error").hidden = !message;
  for (const id of Object.values(FIELD_INPUTS)) $(id).removeAttribute("aria-invalid");
  const input = field && FIELD_INPUTS[field];
  if (input) {
    $(input).setAttribute("aria-invalid", "true");
    $(input).setAttribute("aria-errormessage", "error-message");
    if (input !== "intention") $("more").open = true;
  }
}

function setState(value) {
  document.body.dataset.state = value;
  const busy = value === "busy";
  $("answer").setAttribute("aria-busy", busy ? "true" : "false");
  for (const id of ["ask-button", "refine-button"]) $(id).disabled = busy;
  if (busy) $("status").textContent = "Asking the model...";
}

// --- the catalogue: examples, placeholders, search ------------------------------------------

async function loadExamples() {
  try {
    const [examples, health] = await Promise.all([api("/v1/examples"), api("/healthz")]);
    const p = examples.placeholders;
    $("intention").placeholder = p.intention;
    $("preference").placeholder = p.preference;
    $("context").placeholder = p.context;
    $("refine").placeholder = p.refine;
    $("item-search").placeholder = p.item_search;
    const kinds = examples.categories.slice(0, 4).join(", ") + (examples.categories.length > 4 ? ", ..." : "");
    $("catalogue-line").textContent =
      `Catalogue: ${health.items.toLocaleString()} items` + (kinds ? ` (${kinds})` : "") +
      `, ${health.users.toLocaleString()} users.`;
    const box = $("examples");
    for (const example of examples.examples) {
      const button = el("button", { type: "button", class: "chip", text: example.label });
      button.addEventListener("click", () => useExample(example).catch(() => {}));
      box.appendChild(button);
    }
    box.hidden = examples.examples.length === 0;
  } catch (e) {
    showError(e.message);
  } finally {
    document.body.dataset.examples = "ready";
  }
}

async function useExample(example) {
  const r = example.request;
  $("intention").value = r.intention || "";
  $("preference").value = r.preference || "";
  if (r.preference) $("more").open = true;
  if (r.user !== undefined) await chooseUser(String(r.user), false);
  return ask(example.label);
}

let searchTimer = null;
let searchSeq = 0;

function searchItems() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runItemSearch, 200);
}

async function runItemSearch() {
  const q = $("item-search").value.trim();
  const list = $("item-results");
  const seq = ++searchSeq;
  if (!q) {
    list.replaceChildren();
    return [];
  }
  try {
    const body = await api(`/v1/items?limit=8&q=${encodeURIComponent(q)}`);
    if (seq !== searchSeq) return body.items;
    list.replaceChildren();
    if (body.items.length === 0) list.appendChild(el("li", { class: "muted", text: "No item matches." }));
    for (const item of body.items) {
      const button = el("button", { type: "button", class: "add-item", "aria-label": `Add ${item.title} to your history` }, [
        el("span", { class: "title", text: item.title }),
        el("span", { class: "muted small", text: describe(item) }),
      ]);
      button.addEventListener("click", () => {
        addToHistory(item);
        $("item-search").value = "";
        list.replaceChildren();
        $("item-search").focus();
      });
      list.appendChild(el("li", {}, [button]));
    }
    document.body.dataset.search = "ready";
    return body.items;
  } catch (e) {
    showError(e.message);
    return [];
  }
}

function describe(item) {
  const parts = [];
  if (item.categories && item.categories.length) parts.push(item.categories.join(" › "));
  if (item.brand) parts.push(item.brand);
  return parts.join(" · ");
}

// --- the history -----------------------------------------------------------------------------

function renderHistory() {
  const list = $("history");
  list.replaceChildren();
  // Most recent first: the API takes (and the server keeps) oldest first.
  state.history.slice().reverse().forEach((item) => {
    const remove = el("button", { type: "button", class: "remove", text: "Remove", "aria-label": `Remove ${item.title} from your history` });
    remove.addEventListener("click", () => removeFromHistory(item.item_id));
    list.appendChild(el("li", { class: "history-item", "data-item-id": item.item_id }, [
      el("div", {}, [el("span", { class: "title", text: item.title }), el("span", { class: "muted small", text: describe(item) })]),
      remove,
    ]));
  });
  const n = state.history.length;
  $("history-note").textContent = n === 0
    ? "Empty: recommendations use only what you type. Add items you had, or load a user."
    : (state.user && !state.historyEdited ? `User ${state.user}: ` : state.user ? `User ${state.user}, edited: ` : "") +
      `${n} item${n === 1 ? "" : "s"}, most recent first. Recommendations leave them out and read them as your taste.`;
  $("clear-history").hidden = n === 0;
}

function addToHistory(item) {
  if (state.history.some((h) => h.item_id === item.item_id)) return;
  state.history.push({ item_id: item.item_id, title: item.title, categories: item.categories, brand: item.brand });
  historyChanged(`added “${item.title}”`);
}

function removeFromHistory(itemId) {
  const item = state.history.find((h) => h.item_id === itemId);
  if (!item) return;
  state.history = state.history.filter((h) => h.item_id !== itemId);
  historyChanged(`removed “${item.title}”`);
  const first = document.querySelector("#history .remove");
  (first || $("item-search")).focus();
}

let updateTimer = null;

function historyChanged(edit) {
  state.historyEdited = true;
  state.pendingEdits.push(edit);
  renderHistory();
  // An answer on screen is brought up to date with the new history.
  if (state.answer) {
    clearTimeout(updateTimer);
    updateTimer = setTimeout(() => updateForHistory().catch(() => {}), 400);
  }
}

async function chooseUser(id, update = true) {
  showError("");
  const body = await api(`/v1/users/${encodeURIComponent(id)}`);
  state.user = body.original_id;
  state.history = body.history;
  state.historyEdited = false;
  renderHistory();
  if (update && state.answer) {
    state.pendingEdits.push(`loaded the history of user ${body.original_id}`);
    await updateForHistory();
  }
}

async function searchUsers() {
  const q = $("user-search").value.trim();
  try {
    const body = await api(`/v1/users?limit=20&q=${encodeURIComponent(q)}`);
    const list = $("user-options");
    list.replaceChildren();
    for (const u of body.users) list.appendChild(el("option", { value: u.original_id, label: `${u.interactions} items` }));
  } catch (e) {
    showError(e.message);
  }
}

// --- asking ----------------------------------------------------------------------------------

function optional(id) {
  const value = $(id).value.trim();
  return value ? value : undefined;
}

// Who is asking: the user and, when edited or without a user, the history itself (ids,
// oldest first).
function who() {
  const request = { k: Number($("k").value) || 10 };
  if (state.user) request.user = state.user;
  if (state.historyEdited || !state.user) {
    if (state.history.length || state.user) request.history = state.history.map((h) => h.item_id);
  }
  return request;
}

// A new conversation from the form.
async function ask(label) {
  clearTimeout(updateTimer); // this request carries the edited history already
  const request = who();
  request.intention = optional("intention");
  request.preference = optional("preference");
  request.context = optional("context");
  state.session = null;
  state.answer = null;
  state.turns = [];
  state.pendingEdits = [];
  const what = label || request.intention || request.preference || "from your history";
  return run(request, { kind: "ask", title: label ? "Example" : "Asked", text: what });
}

async function refine(text) {
  clearTimeout(updateTimer); // this request carries the edited history already
  const request = who();
  request.session = state.session;
  request.refine = true;
  request.intention = text;
  const edits = state.pendingEdits.slice();
  return run(request, { kind: "refine", title: "Refined", text, edits });
}

// The same need again, in the same session, with the edited history.
async function updateForHistory() {
  if (!state.answer || state.pendingEdits.length === 0) return;
  const need = state.answer.need;
  const request = who();
  request.session = state.session;
  if (need.intention) request.intention = need.intention;
  if (need.intention_style) request.intention_style = need.intention_style;
  if (need.preference) request.preference = need.preference;
  if (need.context) request.context = need.context;
  const edits = state.pendingEdits.slice();
  return run(request, { kind: "history", title: "History edited", text: edits.join("; "), edits });
}

async function run(request, turn) {
  showError("");
  setState("busy");
  state.lastRun = [request, turn];
  try {
    const answer = await api("/v1/recommend", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    const before = state.answer;
    state.session = answer.session;
    state.answer = answer;
    state.pendingEdits = [];
    turn.need = answer.need.intention || answer.need.preference || "";
    turn.change = change(before, answer);
    state.turns.push(turn);
    render(answer);
    renderTrail();
    setState("done");
    return answer;
  } catch (e) {
    showError(e.message, e.field);
    $("status").textContent = state.answer ? "The results below are from the last answer." : "";
    setState("failed");
    throw e;
  }
}

// What a turn changed in the list: items that entered, items that left, or the order.
function change(before, after) {
  const titles = (a) => a.items.map((i) => i.title);
  if (!before) {
    const top = titles(after).slice(0, 3);
    return top.length ? `Top: ${top.join(", ")}` : "No items.";
  }
  const was = new Set(before.items.map((i) => i.item_id));
  const now = new Set(after.items.map((i) => i.item_id));
  const entered = after.items.filter((i) => !was.has(i.item_id)).map((i) => i.title);
  const left = before.items.filter((i) => !now.has(i.item_id)).map((i) => i.title);
  const parts = [];
  const list = (xs) => (xs.length > 3 ? `${xs.slice(0, 3).join(", ")} and ${xs.length - 3} more` : xs.join(", "));
  if (entered.length) parts.push(`New: ${list(entered)}`);
  if (left.length) parts.push(`Gone: ${list(left)}`);
  if (!parts.length) {
    const same = before.items.every((i, n) => after.items[n] && after.items[n].item_id === i.item_id);
    parts.push(same ? "Same items in the same order" : "Same items, new order");
  }
  return parts.join(". ");
}

// --- showing the answer ----------------------------------------------------------------------

function render(answer) {
  $("answer").hidden = false;
  const ms = answer.timings.total_ms.toFixed(0);
  $("status").textContent =
    `${answer.items.length} of ${answer.scored} candidates` +
    (answer.matcher ? ` (found by ${answer.matcher})` : " (yours)") +
    `, ranked by the model in ${ms} ms. Scenario ${answer.scenario}.`;
  const list = $("results");
  list.replaceChildren();
  for (const item of answer.items) list.appendChild(card(item, answer.scored));
  const groups = $("instruction-list");
  groups.replaceChildren();
  answer.groups.forEach((g, n) => {
    groups.appendChild(el("h3", { text: `Group ${n + 1}: ${g.item_ids.length} candidates` }));
    groups.appendChild(el("p", { class: "instruction", text: g.instruction }));
  });
  document.body.dataset.refined = answer.refined ? "yes" : "no";
}

function card(item, scored) {
  // One decimal: shares of 20 candidates are often within a few points of each other.
  const percent = (item.relevance * 100).toFixed(1);
  const bar = el("span", { class: "bar", "aria-hidden": "true" }, [el("span", { class: "fill" })]);
  bar.firstChild.style.width = `${Math.max(2, Math.min(100, item.relevance * 100))}%`;
  const had = el("button", { type: "button", class: "had", text: "I had this", "aria-label": `I had ${item.title}: add it to your history` });
  had.addEventListener("click", () => addToHistory(item));
  const meta = describe(item);
  return el("li", { class: "card result", "data-item-id": item.item_id }, [
    el("div", { class: "card-head" }, [
      el("span", { class: "rank" }, [el("span", { class: "visually-hidden", text: "Rank " }), document.createTextNode(String(item.rank))]),
      el("h3", { class: "title", text: item.title }),
    ]),
    meta ? el("p", { class: "meta", text: meta }) : null,
    el("p", {
      class: "relevance",
      title: `The model's preference for this item as a share of the ${scored} candidates it scored (a softmax of the log-likelihood per title token).`,
    }, [el("span", { class: "label", text: "Relevance" }), bar, el("span", { class: "value", text: `${percent}%` })]),
    el("p", { class: "why", text: item.why.summary }),
    had,
  ]);
}

function renderTrail() {
  $("trail-panel").hidden = state.turns.length === 0;
  const list = $("trail");
  list.replaceChildren();
  state.turns.forEach((turn, n) => {
    const children = [
      el("p", { class: "turn-head" }, [
        el("span", { class: "turn-no", text: String(n + 1) }),
        el("strong", { text: turn.title }),
        // What was typed is quoted; a history edit is a description, already quoting titles.
        el("span", { text: turn.kind === "history" ? `: ${turn.text}` : ` “${turn.text}”` }),
      ]),
    ];
    if (turn.kind === "refine" && turn.edits && turn.edits.length) {
      children.push(el("p", { class: "small", text: `Also: history ${turn.edits.join("; ")}.` }));
    }
    if (turn.kind !== "ask" && turn.need) children.push(el("p", { class: "small muted", text: `Need now: ${turn.need}` }));
    children.push(el("p", { class: "small change", text: turn.change }));
    list.appendChild(el("li", { class: "turn", "data-kind": turn.kind }, children));
  });
}

// --- wiring ----------------------------------------------------------------------------------

$("ask-form").addEventListener("submit", (e) => {
  e.preventDefault();
  ask().catch(() => {});
});
$("refine-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("refine").value.trim();
  if (!text) return showError("Type how to refine the results.");
  if (!state.session) return showError("Ask first, then refine.");
  refine(text).then(() => { $("refine").value = ""; }).catch(() => {});
});
$("error-dismiss").addEventListener("click", () => {
  showError("");
  $("intention").focus();
});
$("start-over").addEventListener("click", () => {
  state.session = null;
  state.answer = null;
  state.turns = [];
  state.pendingEdits = [];
  $("answer").hidden = true;
  renderTrail();
  $("intention").value = "";
  $("intention").focus();
});
$("item-search").addEventListener("input", searchItems);
$("item-search").addEventListener("keydown", (e) => {
  if (e.key === "Escape") {
    $("item-search").value = "";
    $("item-results").replaceChildren();
  }
});
$("add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  clearTimeout(searchTimer);
  const items = await runItemSearch();
  if (items && items.length) {
    addToHistory(items[0]);
    $("item-search").value = "";
    $("item-results").replaceChildren();
  }
});
$("clear-history").addEventListener("click", () => {
  if (!state.history.length) return;
  state.history = [];
  historyChanged("cleared it");
  $("item-search").focus();
});
$("user-search").addEventListener("input", searchUsers);
$("user-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = $("user-search").value.trim();
  if (!id) return showError("Type a user id to load.");
  chooseUser(id).catch((err) => showError(err.message));
});

async function start() {
  const params = new URLSearchParams(location.search);
  for (const [param, id] of [["q", "intention"], ["preference", "preference"], ["context", "context"], ["k", "k"], ["refine", "refine"]]) {
    if (params.has(param)) $(id).value = params.get(param);
  }
  if (params.get("preference") || params.get("context") || params.get("k")) $("more").open = true;
  const examples = loadExamples();
  if (params.get("user")) {
    $("user-search").value = params.get("user");
    await chooseUser(params.get("user"), false);
  }
  renderHistory();
  searchUsers();
  await examples;
  if (params.get("autorun") === "1") {
    await ask();
    if (params.get("refine")) await refine(params.get("refine"));
    document.body.dataset.state = "done";
  }
}

start().catch((e) => {
  showError(e.message);
  document.body.dataset.state = "failed";
});
