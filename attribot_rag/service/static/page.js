// The search page: ask /v1/ask/stream, show the answer as it is written and each sentence's
// markers as it completes, then the cited answer, quotes on the markers, shaded sources.
// Plain DOM code, no framework and nothing fetched from anywhere but this server.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // the last /v1/ask response

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function errorMessage(response) {
  const body = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
  const retry = response.headers.get("Retry-After");
  const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  return detail + (retry ? ` (retry in ${retry} s)` : "");
}

// POST /v1/ask/stream and hand each server-sent event to onEvent(kind, data); resolves with
// the done event's body. (EventSource cannot POST, hence fetch and a stream reader.)
async function askStream(question, pruneFirst, onEvent) {
  const response = await fetch("/v1/ask/stream", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ question, prune: pruneFirst }),
  });
  if (!response.ok) throw new Error(await errorMessage(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let done = null;
  for (;;) {
    const { value, done: finished } = await reader.read();
    if (finished) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) { // an SSE block ends with a blank line
      const event = parseEvent(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (!event) continue;
      if (event.kind === "error") throw new Error(event.data.detail);
      if (event.kind === "incomplete") done = { incomplete: event.data };
      else if (event.kind === "done") done = event.data;
      else onEvent(event.kind, event.data);
    }
  }
  if (!done) throw new Error("the answer stream ended before the answer was complete");
  return done;
}

function parseEvent(block) {
  let kind = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  return data.length ? { kind, data: JSON.parse(data.join("\n")) } : null;
}

// The answer while it streams: the text so far, and after each completed sentence its
// provisional markers (not buttons: the quotes come with the done event, which replaces all).
function startLiveAnswer() {
  let live = null; // set up at the first event, so a refused request keeps the last answer
  return (kind, data) => {
    if (!live) {
      live = { text: "", sentences: [] };
      current = null;
      hideQuote();
      $("answers").hidden = false;
      $("draft-column").hidden = true;
      $("sources").hidden = true;
      $("answer-heading").textContent = "Answer";
      $("unsupported").textContent = "";
    }
    if (kind === "text") live.text += data.text;
    else if (kind === "sentence") live.sentences.push(data);
    renderLiveAnswer($("answer"), live);
  };
}

// The quotes behind the markers cited before a stream stopped (no done event to render).
function partialReferences(sentences) {
  const seen = new Map();
  for (const sentence of sentences) {
    for (const c of sentence.citations) {
      if (!seen.has(c.number)) seen.set(c.number, `[${c.number}] ${c.title || c.passage_id}: \u201c${c.quote}\u201d`);
    }
  }
  return seen.size ? `Cited so far: ${[...seen.values()].join("  ")}` : "";
}

function renderLiveAnswer(container, live) {
  container.textContent = "";
  let pos = 0;
  for (const sentence of live.sentences) {
    const end = sentence.span[1];
    container.append(live.text.slice(pos, end));
    if (sentence.markers.length) container.append(" ");
    for (const n of sentence.markers) container.append(el("span", { class: "provisional-marker" }, `[${n}]`));
    pos = end;
  }
  container.append(live.text.slice(pos));
}

// The markers are the library's own (cited_answer); each supported sentence's group
// " [1][2]" is found in order, so the text shown is exactly what the API returned.
function renderCitedAnswer(container, cite) {
  container.textContent = "";
  const text = cite.cited_answer;
  let pos = 0;
  for (const sentence of cite.sentences) {
    if (!sentence.markers.length) continue;
    const group = " " + sentence.markers.map((n) => `[${n}]`).join("");
    const at = text.indexOf(group, pos);
    if (at < 0) continue;
    container.append(text.slice(pos, at), " ");
    for (const n of sentence.markers) container.append(markerButton(n, sentence.index));
    pos = at + group.length;
  }
  container.append(text.slice(pos));
}

function markerButton(number, sentenceIndex) {
  const button = el("button", { class: "marker", type: "button", "data-number": number, "data-sentence": sentenceIndex }, `[${number}]`);
  button.addEventListener("mouseenter", () => showQuote(button));
  button.addEventListener("focus", () => showQuote(button));
  button.addEventListener("click", () => showQuote(button));
  button.addEventListener("mouseleave", () => { if (!button.classList.contains("active")) hideQuote(); });
  return button;
}

// Where a passage or citation came from: its document's file (and PDF page) for an index
// built with `attribot-rag index --docs`, else its title and id.
function origin(item) {
  const id = item.id ?? item.passage_id;
  if (item.file) return item.file + (item.page ? `, page ${item.page}` : "");
  return item.title ? `${item.title} (${id})` : id;
}

function citationsFor(number, sentenceIndex) {
  return current.cite.citations.filter((c) => c.number === number && c.sentence_index === sentenceIndex);
}

// What a citation rests on, in the reader's words (the API's "evidence").
const EVIDENCE_WORDS = {
  supports: "states it",
  used: "the model relied on it",
  bridge: "links the question to it",
  question: "what the question asks about",
  companion: "a further fact the answer rests on",
};

function showQuote(button) {
  const number = Number(button.dataset.number);
  const cits = citationsFor(number, Number(button.dataset.sentence));
  if (!cits.length) return;
  document.querySelectorAll(".marker.active").forEach((m) => m.classList.remove("active"));
  document.querySelectorAll(".sentence.quoted").forEach((s) => s.classList.remove("quoted"));
  button.classList.add("active");
  const first = cits[0];
  const box = $("quote");
  box.dataset.passageId = first.passage_id;
  box.dataset.number = String(number);
  const rests = EVIDENCE_WORDS[first.evidence] || "cited";
  $("quote-label").textContent = `[${number}] ${origin(first)}: ${rests}, score ${first.score.toFixed(2)}`;
  $("quote-text").textContent = cits.map((c) => c.quote).join(" \u2026 ");
  for (const c of cits) {
    const sentence = document.querySelector(`.sentence[data-source-id="${CSS.escape(c.source_id)}"]`);
    if (sentence) sentence.classList.add("quoted");
  }
  const rect = button.getBoundingClientRect();
  box.style.left = `${window.scrollX + rect.left}px`;
  box.style.top = `${window.scrollY + rect.bottom + 6}px`;
  box.hidden = false;
}

function hideQuote() {
  $("quote").hidden = true;
}

function shade(score, best) {
  if (score === null || best <= 0 || score <= 0) return "transparent";
  return `rgba(var(--shade), ${(0.7 * score / best).toFixed(3)})`;
}

function renderSources(cite, dropped) {
  const list = $("source-list");
  list.textContent = "";
  const scores = cite.passages.flatMap((p) => p.sentences.map((s) => s.score ?? 0));
  const best = Math.max(0, ...scores);
  for (const passage of cite.passages) {
    const head = el("div", { class: "source-head" });
    if (passage.number !== null) head.append(el("span", { class: "number" }, `[${passage.number}]`));
    head.append(origin(passage));
    const body = el("p", { class: "source-text" });
    let pos = 0;
    for (const s of passage.sentences) {
      body.append(passage.text.slice(pos, s.start));
      const title = s.score === null ? "not scored" : `score ${s.score.toFixed(3)}`;
      const span = el("span", { class: "sentence", "data-source-id": s.id, title }, s.text);
      span.style.background = shade(s.score, best);
      body.append(span);
      pos = s.end;
    }
    body.append(passage.text.slice(pos));
    list.append(el("li", { "data-passage-id": passage.id }, head, body));
  }
  for (const p of dropped) {
    const score = p.score === null ? "not scored" : `score ${p.score.toFixed(3)}`;
    const head = el("div", { class: "source-head" }, origin(p), el("span", { class: "score" }, `dropped by pruning, ${score}`));
    list.append(el("li", { class: "dropped", "data-passage-id": p.id }, head, el("p", {}, p.text)));
  }
}

function render(result) {
  current = result;
  hideQuote();
  const pruned = result.prune;
  $("draft-column").hidden = !pruned;
  if (pruned) {
    const total = pruned.kept.length + pruned.dropped.length;
    $("draft").textContent = pruned.draft;
    $("draft-hint").textContent = `with all ${total} passages`;
    $("answer-heading").textContent = `Pruned answer (${pruned.kept.length} of ${total} passages kept)`;
  } else {
    $("answer-heading").textContent = "Answer";
  }
  renderCitedAnswer($("answer"), result.cite);
  const unsupported = result.cite.unsupported.map((s) => `\u201c${s.text}\u201d`);
  $("unsupported").textContent = unsupported.length ? `No source supports: ${unsupported.join(", ")}` : "";
  renderSources(result.cite, pruned ? pruned.dropped : []);
  $("answers").hidden = false;
  $("sources").hidden = false;
}

$("ask-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("ask-button").disabled = true;
  const pruneFirst = $("prune-toggle").checked;
  setStatus(pruneFirst ? "Drafting and pruning the context\u2026" : "Answering and attributing\u2026");
  const t0 = performance.now();
  try {
    const result = await askStream(question, pruneFirst, startLiveAnswer());
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    if (result.incomplete) {
      // the answer so far stays on screen with the markers of the sentences cited in time
      const cited = result.incomplete.sentences.length;
      setStatus(`Stopped after ${seconds} s: ${result.incomplete.detail}. The answer so far is shown; ${cited} sentence(s) were cited before the limit.`, true);
      $("unsupported").textContent = partialReferences(result.incomplete.sentences);
    } else {
      render(result);
      setStatus(`Answered in ${seconds} s with ${current.cite.model} (${current.cite.method}, ${current.cite.evidence === "used" ? "sources the model relied on" : "sources that support each sentence"}).`);
    }
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    $("ask-button").disabled = false;
  }
});

document.addEventListener("click", (event) => {
  if (!event.target.closest(".marker") && !event.target.closest("#quote")) {
    document.querySelectorAll(".marker.active").forEach((m) => m.classList.remove("active"));
    hideQuote();
  }
});
