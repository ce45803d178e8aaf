// The search page: wires the forms to the API and renders what it answers. No framework: each
// function does one thing, and everything it shows from the server goes through dom.js.

import { api, storedKey, storeKey } from "./api.js";
import { el, formatBytes, formatMs, queryWords, renderHits } from "./dom.js";

const $ = (selector) => document.querySelector(selector);
const METRICS = [
  ["cosine", "cosine"],
  ["l2", "L2"],
  ["inner_product", "inner product"],
];
let knownCollections = [];

// --- status, alerts and field errors -------------------------------------------------------

function setStatus(message) {
  $("#status").textContent = message;
}

function showAlert(message) {
  const alert = $("#alert");
  alert.textContent = message;
  alert.hidden = !message;
}

function clearErrors(form) {
  for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

// The slot for an API field name: data-field lists the names a slot answers for ("limit",
// "name collection"); nested names ("filter.year") fall back to their first part, then "body".
function errorSlot(form, field) {
  const slots = [...form.querySelectorAll(".field-error[data-field]")];
  const wanted = [field, (field || "").split(/[.[]/)[0]];
  for (const name of wanted) {
    const slot = slots.find((candidate) => candidate.dataset.field.split(" ").includes(name));
    if (name && slot) return slot;
  }
  return slots.find((candidate) => candidate.dataset.field === "body");
}

function showKeyForm(message) {
  const form = $("#key-form");
  form.hidden = false;
  $("#key-help").textContent = message;
  $("#api-key").focus();
}

// One place decides how a failure is shown: 401 asks for a key, no answer is a banner, the
// API's refusals go next to the field they name.
function showFailure(form, error) {
  if (error.kind === "network") {
    showAlert(error.message);
    setStatus("The server did not answer.");
    return;
  }
  if (error.status === 401) {
    const why = storedKey() ? "The API key was not accepted" : "This server needs an API key";
    showKeyForm(`${why} (${error.message}). Enter it in API key; it stays in this tab only.`);
    setStatus("API key needed.");
    return;
  }
  showAlert("");
  const slot = form ? errorSlot(form, error.field) : null;
  if (slot) {
    slot.textContent = error.message;
    const input = slot.closest(".field")?.querySelector("input, select, textarea");
    if (input) input.setAttribute("aria-invalid", "true");
  } else {
    showAlert(error.message);
  }
  setStatus(`Refused: ${error.message}`);
}

// --- collections ---------------------------------------------------------------------------

function fillCollectionChoices(collections) {
  const select = $("#collection");
  const chosen = select.value;
  select.replaceChildren(
    ...collections.map((c) => el("option", { value: c.name, text: `${c.name} (${c.count})` })),
  );
  if (collections.some((c) => c.name === chosen)) select.value = chosen;
  $("#collection-names").replaceChildren(...collections.map((c) => el("option", { value: c.name })));
}

function facts(pairs) {
  return el(
    "dl",
    { className: "facts" },
    pairs.filter(([, value]) => value !== null && value !== undefined).map(([name, value]) => [
      el("dt", { text: name }),
      el("dd", { text: value }),
    ]),
  );
}

function indexFacts(index) {
  if (!index) return [["Index", "health unavailable"]];
  const recall = index.recall
    ? `${(index.recall.recall * 100).toFixed(1)}% recall@${index.recall.k} (${index.recall.sample} sampled)`
    : "not estimated (exact search or too few rows)";
  return [
    ["Index", `${index.type}${index.valid ? "" : " (invalid)"}${index.opclass ? `, ${index.opclass}` : ""}`],
    ["Index size", formatBytes(index.indexBytes)],
    ["Table size", formatBytes(index.tableBytes)],
    ["Health", recall],
    ["Building", index.build ? `${index.build.phase} ${index.build.blocksDone}/${index.build.blocksTotal}` : null],
  ];
}

function collectionCard(collection, index) {
  const advice = index?.advice?.length
    ? el("ul", { className: "advice", "aria-label": "Advice" }, index.advice.map((a) => el("li", { text: a })))
    : null;
  return el(
    "article",
    { className: "collection", "aria-label": `Collection ${collection.name}` },
    el("h3", { text: collection.name }),
    facts([
      ["Chunks", String(collection.count)],
      ["Model", collection.model],
      ["Dimensions", String(collection.dimensions)],
      ["Storage", collection.storage],
      ["Distance", collection.distance],
      ["Vectors", collection.normalized ? "unit length" : "raw (as the model gives them)"],
      ["Fusion", collection.fusion ? JSON.stringify(collection.fusion) : null],
      ...indexFacts(index),
    ]),
    advice,
  );
}

async function indexHealth(name) {
  try {
    // A small sample: the estimate runs real searches, and the page asks for every collection.
    return (await api(`/collections/${encodeURIComponent(name)}/index?sample=20`)).data;
  } catch {
    return null; // shown as "health unavailable"; the collection itself still lists
  }
}

async function loadCollections() {
  const box = $("#collections");
  try {
    const { data } = await api("/collections");
    knownCollections = data.collections;
    fillCollectionChoices(knownCollections);
    const health = await Promise.all(knownCollections.map((c) => indexHealth(c.name)));
    box.replaceChildren(
      ...(knownCollections.length
        ? knownCollections.map((c, i) => collectionCard(c, health[i]))
        : [el("p", { className: "muted", text: "No collections yet: add text to make one." })]),
    );
    return true;
  } catch (error) {
    box.replaceChildren(el("p", { className: "muted", text: "Collections could not be loaded." }));
    showFailure(null, error);
    return false;
  }
}

// --- search --------------------------------------------------------------------------------

function searchBody(distance) {
  const body = { query: $("#query").value, mode: $("#mode").value };
  const collection = $("#collection").value;
  if (collection) body.collection = collection;
  const chosenDistance = distance ?? $("#distance").value;
  if (chosenDistance) body.distance = chosenDistance;
  // type=number gives "" for text that is no number: sent as given, the API says what is wrong.
  const limit = $("#limit").value.trim();
  if (limit) body.limit = Number.isFinite(Number(limit)) ? Number(limit) : limit;
  return body;
}

function summary(data, found, serverMs, roundTripMs) {
  const what = `${found} result${found === 1 ? "" : "s"} · ${data.mode}${data.mode === "lexical" ? "" : ` · ${data.distance}`}`;
  const where = `collection ${data.collection} · model ${data.model}`;
  const truncated = data.queryTruncated ? " · query cut to the model's window" : "";
  return `${what} · ${where} · server ${formatMs(serverMs)} (round trip ${formatMs(roundTripMs)})${truncated}`;
}

async function runSearch(event) {
  event.preventDefault();
  const form = $("#search-form");
  clearErrors(form);
  setStatus("Searching…");
  const list = $("#results");
  // aria-busy: screen readers (and the tests) wait for the new list, not the old one.
  const section = $("#results-section");
  section.setAttribute("aria-busy", "true");
  try {
    const { data, serverMs, roundTripMs } = await api("/search", { method: "POST", body: searchBody() });
    showAlert("");
    renderHits(list, data.results, { mode: data.mode, words: queryWords($("#query").value) });
    const text = data.results.length
      ? summary(data, data.results.length, serverMs, roundTripMs)
      : `No results in ${data.collection} for this query (server ${formatMs(serverMs)}). Try other words, another mode, or add text.`;
    $("#results-summary").textContent = text;
    setStatus(data.results.length ? `${data.results.length} results.` : "No results.");
  } catch (error) {
    list.replaceChildren();
    $("#results-summary").textContent = "No results: the search failed (see the message above).";
    showFailure(form, error);
  } finally {
    section.setAttribute("aria-busy", "false");
  }
}

// --- compare metrics -----------------------------------------------------------------------

// Per result of one metric: where the cosine list has it, so moves stand out.
function rankNotes(hits, cosineIds) {
  return hits.map((hit, index) => {
    const cosineRank = cosineIds.indexOf(hit.chunkId);
    if (cosineRank === index) return null;
    return cosineRank < 0 ? "moved: not in cosine's list" : `moved: cosine has it at #${cosineRank + 1}`;
  });
}

function compareColumn(label, response, notes, words) {
  const list = el("ol", { className: "results", "aria-label": `${label} results` });
  renderHits(list, response.data.results, { mode: "dense", words, notes });
  return el(
    "section",
    { className: "column", "aria-label": label },
    el("h3", { text: label }),
    el("p", { className: "muted", text: `server ${formatMs(response.serverMs)}` }),
    list,
  );
}

function differences(lists) {
  const cosine = lists[0].map((hit) => hit.chunkId);
  return lists.slice(1).map((hits, i) => {
    const moved = hits.filter((hit, index) => cosine[index] !== hit.chunkId).length;
    return `${METRICS[i + 1][1]}: ${moved ? `${moved} of ${hits.length} positions differ from cosine` : "same ranking as cosine"}`;
  });
}

async function runCompare() {
  const form = $("#search-form");
  clearErrors(form);
  setStatus("Comparing cosine, L2 and inner product…");
  try {
    const responses = await Promise.all(
      METRICS.map(([distance]) => api("/search", { method: "POST", body: { ...searchBody(distance), mode: "dense" } })),
    );
    showAlert("");
    const lists = responses.map((r) => r.data.results);
    const cosineIds = lists[0].map((hit) => hit.chunkId);
    const words = queryWords($("#query").value);
    $("#compare-columns").replaceChildren(
      ...responses.map((response, i) => compareColumn(METRICS[i][1], response, i ? rankNotes(lists[i], cosineIds) : [], words)),
    );
    const same = lists.every((hits) => hits.map((h) => h.chunkId).join() === cosineIds.join());
    $("#compare-summary").textContent = !cosineIds.length
      ? "No results to compare."
      : same
        ? "All three metrics rank these results alike: for unit vectors cosine, L2 and inner product agree. Use a collection with raw vectors to see them differ."
        : `Rankings differ. ${differences(lists).join("; ")}. Scores are distances (smaller is closer); inner product's is the negative dot product.`;
    const section = $("#compare-section");
    section.hidden = false;
    section.focus();
    setStatus("Compared three metrics.");
  } catch (error) {
    showFailure(form, error);
  }
}

// --- add text ------------------------------------------------------------------------------

// Visible text of an HTML file. DOMParser builds an inert document: its scripts never run and
// its images never load.
function htmlText(source) {
  const doc = new DOMParser().parseFromString(source, "text/html");
  for (const node of doc.querySelectorAll("script, style, noscript, template")) node.remove();
  return (doc.body?.innerText ?? doc.body?.textContent ?? "").replace(/\n{3,}/g, "\n\n").trim();
}

function stamp() {
  return new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
}

// Documents to store: the pasted text, then each file. A PDF's text comes from the server
// (POST /text/pdf, pypdf, as `embedsearch ingest` reads PDFs); one it cannot read is named.
async function documentsToStore() {
  const documents = [];
  const refused = [];
  const pasted = $("#add-text").value;
  const files = [...$("#add-files").files];
  if (pasted.trim() || !files.length) {
    documents.push({ documentId: $("#add-document").value.trim() || `pasted-${stamp()}`, text: pasted });
  }
  for (const file of files) {
    const name = file.name.toLowerCase();
    let text;
    if (name.endsWith(".pdf")) {
      try {
        const { data } = await api("/text/pdf", {
          method: "POST",
          raw: await file.arrayBuffer(),
          contentType: "application/pdf",
        });
        text = data.text;
      } catch (error) {
        if (error.kind === "network" || error.status === 401) throw error;
        refused.push(`${file.name}: ${error.message}`);
        continue;
      }
    } else {
      const raw = await file.text();
      text = /\.html?$/.test(name) ? htmlText(raw) : raw;
    }
    documents.push({ documentId: file.name, text, metadata: { source: file.name } });
  }
  return { documents, refused };
}

async function ensureCollection(name) {
  if (!name || knownCollections.some((c) => c.name === name)) return false;
  const body = { name, distance: $("#add-distance").value, normalize: $("#add-normalize").checked };
  await api("/collections", { method: "POST", body });
  return true;
}

function showProgress(done, total, label) {
  const bar = $("#add-progress");
  bar.hidden = false;
  bar.max = Math.max(total, 1);
  bar.value = done;
  setStatus(label);
}

async function addText(event) {
  event.preventDefault();
  const form = $("#add-form");
  clearErrors(form);
  $("#add-result").textContent = "";
  const collection = $("#add-collection").value.trim();
  try {
    const { documents, refused } = await documentsToStore();
    if (refused.length) errorSlot(form, "files").textContent = refused.join("; ");
    if (!documents.length) return;
    const created = await ensureCollection(collection);
    let chunks = 0;
    for (const [index, doc] of documents.entries()) {
      showProgress(index, documents.length, `Storing ${index + 1} of ${documents.length}: ${doc.documentId}…`);
      const { data } = await api("/documents", { method: "POST", body: { ...doc, collection: collection || undefined } });
      chunks += data.chunkIds.length;
    }
    showProgress(documents.length, documents.length, `Stored ${documents.length} document(s).`);
    showAlert("");
    $("#add-result").textContent = `${created ? `Created collection ${collection}. ` : ""}Stored ${documents.length} document(s), ${chunks} chunk(s) in ${collection || "default"}.`;
    // Cleared so the next paste is a new document, not a replacement of this one.
    $("#add-text").value = "";
    $("#add-document").value = "";
    $("#add-files").value = "";
    await loadCollections();
    if (collection) $("#collection").value = collection;
  } catch (error) {
    $("#add-progress").hidden = true;
    showFailure(form, error);
  }
}

// --- API key -------------------------------------------------------------------------------

async function useKey(event) {
  event.preventDefault();
  storeKey($("#api-key").value.trim());
  $("#api-key").value = "";
  setStatus("Checking the key…");
  if (await loadCollections()) {
    showAlert("");
    $("#key-help").textContent = "Key in use for this tab.";
    setStatus("Key accepted.");
    $("#query").focus();
  }
}

function forgetKey() {
  storeKey("");
  setStatus("Key forgotten.");
}

// --- start ---------------------------------------------------------------------------------

function bindKeys() {
  // "/" jumps to the query from anywhere but a text field, as on many search pages.
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, textarea, select");
    if (event.key === "/" && !typing) {
      event.preventDefault();
      $("#query").focus();
    }
  });
}

function start() {
  $("#search-form").addEventListener("submit", runSearch);
  $("#compare").addEventListener("click", runCompare);
  $("#add-form").addEventListener("submit", addText);
  $("#key-form").addEventListener("submit", useKey);
  $("#forget-key").addEventListener("click", forgetKey);
  $("#refresh-collections").addEventListener("click", loadCollections);
  bindKeys();
  if (storedKey()) $("#key-form").hidden = false;
  loadCollections();
  $("#query").focus();
}

start();
