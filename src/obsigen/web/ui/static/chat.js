// The chat page: conversations, streamed answers, tool calls, uploads, code runs, artifacts.
import { ApiError, api, downloadBlob, el, initShell, notice, problemOf, rawFetch, session, show, start, toLogin } from "./common.js";

const state = { conversationId: null, model: null, busy: false };
const $ = (id) => document.getElementById(id);

async function markdown(texts) {
  if (!texts.length) return [];
  return (await api("/ui/api/markdown", { method: "POST", body: { texts } })).html;
}

// The server returns HTML already sanitised to formatting tags (obsigen/web/ui/markdown.py);
// model output never reaches innerHTML any other way.
function setSanitisedHtml(node, html) {
  node.innerHTML = html;
}

async function loadConversations() {
  const list = $("conversation-list");
  const items = await api("/api/v1/conversations", { query: { limit: 50 } });
  list.replaceChildren(
    ...items.map((c) => {
      const button = el("button", { type: "button", class: "conv", "data-id": c.id }, c.title || "Untitled");
      if (c.id === state.conversationId) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => openConversation(c.id));
      return el("li", {}, button);
    }),
  );
}

function toolCallCard(call) {
  const row = (label, value, pre = false) => [
    el("dt", {}, label),
    el("dd", {}, pre ? el("pre", { class: "output" }, value) : value),
  ];
  return el(
    "details",
    { class: `tool-call status-${call.status}`, open: true, "data-tool": call.name },
    el("summary", {}, `Tool ${call.name}: ${call.status} (policy: ${call.decision})`),
    el(
      "dl",
      {},
      ...row("Ran", call.name),
      ...row("With", call.arguments, true),
      ...row("Policy decision", call.decision),
      ...row("Executed by", call.executed_by),
      ...row("Outcome", `${call.status}, ${call.duration_ms} ms`),
      ...row("Result", call.result || "(none yet)", true),
    ),
  );
}

function messageItem(role, body, extra = "") {
  return el("li", { class: `msg ${role} ${extra}`.trim(), "data-role": role }, el("span", { class: "who" }, role === "user" ? "You" : "Assistant"), body);
}

async function renderConversation(detail) {
  const list = $("messages");
  const calls = new Map(detail.tool_calls.map((c) => [c.call_id, c]));
  const shown = detail.messages.filter((m) => m.role === "user" || m.role === "assistant");
  const html = await markdown(shown.filter((m) => m.role === "assistant" && m.content).map((m) => m.content));
  const items = [];
  for (const m of shown) {
    if (m.role === "user") {
      items.push(messageItem("user", el("div", { class: "body" }, m.content)));
      continue;
    }
    for (const requested of m.tool_calls || []) {
      const call = calls.get(requested.id);
      if (call) items.push(el("li", { class: "msg tool" }, toolCallCard(call)));
    }
    if (m.content) {
      const body = el("div", { class: "body markdown" });
      setSanitisedHtml(body, html.shift());
      items.push(messageItem("assistant", body));
    }
    if (m.status === "failed" && m.error) items.push(messageItem("assistant", el("p", { class: "error" }, m.error)));
  }
  list.replaceChildren(...items);
  list.lastElementChild?.scrollIntoView({ block: "end" });
}

async function openConversation(id) {
  state.conversationId = id;
  await renderConversation(await api(`/api/v1/conversations/${encodeURIComponent(id)}`));
  await loadConversations();
}

// Reads an SSE body: one callback per parsed `data:` payload.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  state.busy = true;
  $("send").disabled = true;
  const list = $("messages");
  list.append(messageItem("user", el("div", { class: "body" }, text)));
  const live = el("div", { class: "body streaming", "aria-busy": "true" });
  const item = messageItem("assistant", live, "pending");
  list.append(item);
  item.scrollIntoView({ block: "end" });
  let chunks = 0;
  try {
    const body = { model: state.model, stream: true, messages: [{ role: "user", content: text }] };
    if (state.conversationId) body.conversation_id = state.conversationId;
    const response = await rawFetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    state.conversationId = response.headers.get("X-Obsigen-Conversation-Id") || state.conversationId;
    await readEvents(response, (event) => {
      if (event.error) throw new ApiError(502, { detail: event.error.message || "the answer failed" });
      if (event.conversation_id) state.conversationId = event.conversation_id;
      const delta = event.choices?.[0]?.delta?.content;
      if (delta) {
        // Plain text while streaming; the sanitised Markdown replaces it when the turn ends.
        live.append(document.createTextNode(delta));
        chunks += 1;
        item.dataset.chunks = String(chunks);
      }
    });
    item.dataset.streamedChunks = String(chunks);
    await openConversation(state.conversationId);
    const last = [...$("messages").querySelectorAll(".msg.assistant")].pop();
    if (last) last.dataset.streamedChunks = String(chunks);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    live.removeAttribute("aria-busy");
    live.append(el("p", { class: "error", role: "alert" }, error.message));
  } finally {
    state.busy = false;
    $("send").disabled = false;
  }
}

function upload(file) {
  // XMLHttpRequest, because fetch reports no upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/files");
    xhr.setRequestHeader("Authorization", `Bearer ${session().access_token}`);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) $("upload-progress").value = Math.round((100 * e.loaded) / e.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 401) toLogin(true);
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(new ApiError(xhr.status, xhr.response));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { detail: "the upload failed" })));
    const form = new FormData();
    form.append("file", file);
    xhr.send(form);
  });
}

async function waitForIndexing(fileId) {
  const bar = $("index-progress");
  for (let i = 0; i < 600; i += 1) {
    const p = await api(`/api/v1/files/${encodeURIComponent(fileId)}/ingestion`);
    bar.max = Math.max(1, p.chunks_total);
    bar.value = p.chunks_done;
    if (p.status === "done") return "indexed: the assistant can search it now";
    if (["failed", "skipped", "none"].includes(p.status)) return `not indexed (${p.status}) ${p.error || ""}`;
    await new Promise((r) => setTimeout(r, 300));
  }
  return "still indexing";
}

function bindUpload() {
  $("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("upload-file").files[0];
    if (!file) return;
    show("upload-status");
    $("upload-progress").value = 0;
    $("index-progress").value = 0;
    const message = $("upload-message");
    message.textContent = `Uploading ${file.name}…`;
    $("upload-submit").disabled = true;
    try {
      const stored = await upload(file);
      $("upload-progress").value = 100;
      message.textContent = `${stored.name}: uploaded, indexing…`;
      message.textContent = `${stored.name}: ${await waitForIndexing(stored.id)}`;
      message.dataset.state = "done";
    } catch (error) {
      message.textContent = `Upload failed: ${error.message}`;
      message.dataset.state = "failed";
    } finally {
      $("upload-submit").disabled = false;
    }
  });
}

function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(reader.result));
    reader.addEventListener("error", () => reject(reader.error));
    reader.readAsDataURL(blob);
  });
}

async function artifactBlob(artifact) {
  const response = await rawFetch(`/api/v1/artifacts/${encodeURIComponent(artifact.id)}`);
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response.blob();
}

async function loadArtifacts() {
  const items = await api("/api/v1/artifacts", { query: { limit: 50 } });
  const list = $("artifact-list");
  list.replaceChildren(
    ...items.map((artifact) => {
      const download = el("button", { type: "button", class: "ghost" }, `Download ${artifact.name}`);
      download.addEventListener("click", async () => downloadBlob(await artifactBlob(artifact), artifact.name));
      const li = el("li", { "data-id": artifact.id }, el("span", {}, `${artifact.name} (${artifact.size} bytes)`), download);
      if (artifact.content_type === "image/png") {
        // img-src allows data: URLs but not blob:, so the preview is inlined as data.
        artifactBlob(artifact)
          .then(dataUrl)
          .then((src) => li.append(el("img", { src, alt: `Preview of ${artifact.name}`, class: "preview" })))
          .catch(() => {});
      }
      return li;
    }),
  );
}

function bindCode() {
  $("code-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("code-run").disabled = true;
    $("code-exit").textContent = "Running…";
    show("code-result");
    try {
      const result = await api("/api/v1/code/run", { method: "POST", body: { language: "python", code: $("code").value } });
      $("code-exit").textContent = `Exit code ${result.exit_code} in ${result.duration_ms} ms${result.timed_out ? " (timed out)" : ""}`;
      $("code-stdout").textContent = result.stdout || "(no output)";
      $("code-stderr").textContent = result.stderr;
      $("code-stderr").hidden = !result.stderr;
      await loadArtifacts();
    } catch (error) {
      $("code-exit").textContent = `Could not run: ${error.message}`;
    } finally {
      $("code-run").disabled = false;
    }
  });
}

function bindComposer() {
  const prompt = $("prompt");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || state.busy) return;
    prompt.value = "";
    send(text).then(() => prompt.focus());
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("new-conversation").addEventListener("click", () => {
    state.conversationId = null;
    $("messages").replaceChildren();
    loadConversations();
    prompt.focus();
  });
  $("artifacts-refresh").addEventListener("click", loadArtifacts);
}

async function main() {
  const me = await initShell();
  if (!me) return;
  bindComposer();
  bindUpload();
  bindCode();
  try {
    const models = await api("/v1/models");
    state.model = models.data[0]?.id;
    await Promise.all([loadConversations(), loadArtifacts()]);
  } catch (error) {
    notice(error.message, "error");
  }
  document.body.dataset.ready = "true";
}

start(main);
