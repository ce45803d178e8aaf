// Building the page's pieces. Untrusted text (chunks, metadata, ids, API messages) only ever
// goes into text nodes (textContent / createTextNode), never into markup, so stored
// "<img onerror=...>" shows as the characters it is.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// The query's words (letters and digits, 2+ characters), longest first so "networks" wins
// over "net" where both match.
export function queryWords(query) {
  const words = query.toLowerCase().match(/[\p{L}\p{N}]{2,}/gu) || [];
  return [...new Set(words)].sort((a, b) => b.length - a.length);
}

function escapeRegExp(word) {
  return word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// Text with every word that starts with a query word wrapped in <mark>: a prefix match, so
// "index" marks "indexes" as lexical search's stemming would find it.
export function highlighted(text, words) {
  const out = document.createDocumentFragment();
  if (!words.length) {
    out.append(document.createTextNode(text));
    return out;
  }
  const pattern = new RegExp(
    `(?<![\\p{L}\\p{N}])(?:${words.map(escapeRegExp).join("|")})[\\p{L}\\p{N}]*`,
    "giu",
  );
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    out.append(document.createTextNode(text.slice(last, match.index)));
    out.append(el("mark", { text: match[0] }));
    last = match.index + match[0].length;
  }
  out.append(document.createTextNode(text.slice(last)));
  return out;
}

// What a score means depends on the mode: dense scores are pgvector distances.
export function scoreMeaning(mode) {
  return mode === "dense" ? "distance, smaller is closer" : "relevance, larger is better";
}

// Bar lengths relative to this list (best result full, worst 15%): distances have no common
// scale across metrics (inner product's is negative), but "how much closer than the rest" does.
export function barFractions(scores, smallerIsBetter) {
  const low = Math.min(...scores);
  const high = Math.max(...scores);
  return scores.map((score) => {
    if (high === low) return 1;
    const goodness = smallerIsBetter ? (high - score) / (high - low) : (score - low) / (high - low);
    return 0.15 + 0.85 * goodness;
  });
}

export function formatScore(score) {
  return Math.abs(score) >= 100 ? score.toFixed(1) : score.toFixed(4);
}

function scoreRow(score, fraction, meaning) {
  const bar = el("span", { className: "bar", "aria-hidden": "true" }, el("span", { className: "fill" }));
  // A width set through CSSOM is not an inline style attribute: allowed by the page's CSP.
  bar.firstChild.style.width = `${Math.round(fraction * 100)}%`;
  return el(
    "p",
    { className: "score" },
    bar,
    el("span", { className: "score-value", text: formatScore(score) }),
    el("span", { className: "muted", text: ` ${meaning}` }),
  );
}

function metadataList(metadata) {
  const entries = Object.entries(metadata || {});
  if (!entries.length) return null;
  return el(
    "dl",
    { className: "metadata" },
    entries.map(([name, value]) => [
      el("dt", { text: name }),
      el("dd", { text: typeof value === "string" ? value : JSON.stringify(value) }),
    ]),
  );
}

export function resultItem(hit, { fraction, meaning, words, rank, note = null }) {
  return el(
    "li",
    { className: "result", "data-chunk-id": hit.chunkId },
    el(
      "p",
      { className: "ids" },
      el("span", { className: "rank", text: `#${rank}` }),
      " chunk ",
      el("code", { className: "chunk-id", text: hit.chunkId }),
      hit.documentId ? [" · document ", el("code", { className: "document-id", text: hit.documentId })] : null,
    ),
    scoreRow(hit.score, fraction, meaning),
    note ? el("p", { className: "note", text: note }) : null,
    hit.text ? el("p", { className: "text" }, highlighted(hit.text, words)) : el("p", { className: "muted", text: "(no text stored)" }),
    metadataList(hit.metadata),
  );
}

// Replace a list's items with one rendered result per hit.
export function renderHits(list, hits, { mode, words, notes = [] }) {
  const fractions = barFractions(hits.map((hit) => hit.score), mode === "dense");
  const meaning = scoreMeaning(mode);
  list.replaceChildren(
    ...hits.map((hit, index) =>
      resultItem(hit, { fraction: fractions[index], meaning, words, rank: index + 1, note: notes[index] }),
    ),
  );
}

export function formatMs(ms) {
  return ms === null || ms === undefined ? "n/a" : `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

export function formatBytes(bytes) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}
