"""The page at ``/``: a prompt box, the main decoding settings and the text streaming in; two modes.

* completion: the text continues the prompt (``POST /v1/completions``);
* chat: a conversation; each message is sent with the ones before it (``POST /v1/chat/completions``,
  rendered with the model's chat template) and the reply streams in below it.

Plain HTML and JavaScript (no build step); it calls the API with ``stream: true`` and reads the
server-sent events with ``fetch``.
"""
from __future__ import annotations

import html

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lstm-pipeline serve: __MODEL__</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.3rem; margin-bottom: .2rem; }
  .sub { color: #666; margin-top: 0; }
  textarea { width: 100%; box-sizing: border-box; font: 1rem/1.4 ui-monospace, monospace; padding: .5rem; }
  fieldset { border: 1px solid #ccc; display: flex; flex-wrap: wrap; gap: .8rem 1.4rem; margin: .8rem 0; }
  label { display: flex; flex-direction: column; font-size: .85rem; color: #444; }
  input { width: 7rem; font-size: 1rem; }
  button { font-size: 1rem; padding: .4rem 1.2rem; margin-right: .5rem; }
  #output { white-space: pre-wrap; font: 1rem/1.45 ui-monospace, monospace; border: 1px solid #ccc;
            min-height: 8rem; padding: .6rem; background: #fafafa; }
  #output .prompt { color: #777; }
  #status { color: #666; font-size: .9rem; margin: .4rem 0; }
  .error { color: #b00020; }
  #chat_log { display: none; margin-bottom: .6rem; }
  .chat #chat_log { display: block; }
  .chat #output, .chat-only { display: none !important; }
  .chat .chat-only { display: revert !important; }
  .msg { white-space: pre-wrap; font: 1rem/1.45 ui-monospace, monospace; padding: .4rem .6rem; margin: .3rem 0;
         border-left: 3px solid #ccc; background: #fafafa; }
  .msg.user { border-color: #3b6fb6; }
  .msg.assistant { border-color: #3a9a55; }
  .msg .role { display: block; color: #777; font-size: .8rem; }
</style>
</head>
<body class="completion">
<h1>lstm-pipeline serve</h1>
<p class="sub">model <b id="model">__MODEL__</b>, continuously batched; the same API answers at <code>/v1/completions</code>
and <code>/v1/chat/completions</code>.</p>
<p><label style="flex-direction: row; gap: .4rem; align-items: center;">mode
  <select id="mode"><option value="completion">completion</option><option value="chat">chat</option></select></label></p>
<div id="chat_log"></div>
<textarea id="prompt" rows="4" placeholder="Type a prompt">ROMEO:</textarea>
<fieldset>
  <label>max tokens <input id="max_tokens" type="number" min="1" max="__MAX_TOKENS__" value="200"></label>
  <label>temperature <input id="temperature" type="number" min="0" step="0.05" value="0.8"></label>
  <label>top p <input id="top_p" type="number" min="0.01" max="1" step="0.01" value="1"></label>
  <label>top k <input id="top_k" type="number" min="0" step="1" value="0"></label>
  <label>repetition penalty <input id="repetition_penalty" type="number" min="0.1" step="0.05" value="1"></label>
  <label>seed <input id="seed" type="number" min="0" step="1" placeholder="random"></label>
  <label>API key <input id="api_key" type="password" placeholder="__KEY_HINT__"></label>
  <label class="chat-only" title="chat: end a reply at a blank line, where the chat template ends a turn">end at blank line
    <input id="stop_turn" type="checkbox" checked></label>
</fieldset>
<button id="generate">Generate</button><button id="stop" disabled>Stop</button><button id="reset" class="chat-only">New chat</button>
<div id="status"></div>
<div id="output"></div>
<script>
const $ = (id) => document.getElementById(id);
let controller = null;
const history = [];  // chat mode: the conversation so far, as OpenAI messages
const chat = () => $("mode").value === "chat";

function settings() {
  const body = { model: $("model").textContent, stream: true,
                 max_tokens: parseInt($("max_tokens").value, 10),
                 temperature: parseFloat($("temperature").value), top_p: parseFloat($("top_p").value) };
  const topk = parseInt($("top_k").value, 10);
  if (topk > 0) body.top_k = topk;
  const rp = parseFloat($("repetition_penalty").value);
  if (rp !== 1) body.repetition_penalty = rp;
  if ($("seed").value !== "") body.seed = parseInt($("seed").value, 10);
  if (chat()) {
    body.messages = history.slice();
    if ($("stop_turn").checked) body.stop = ["\\n\\n"];
  } else {
    body.prompt = $("prompt").value;
  }
  return body;
}

function addMessage(role, text) {
  const div = document.createElement("div"); div.className = "msg " + role;
  const who = document.createElement("span"); who.className = "role"; who.textContent = role;
  const body = document.createElement("span"); body.textContent = text;
  div.append(who, body); $("chat_log").append(div);
  return body;
}

function startOutput() {
  // the element the reply streams into (id "generated"): the output box, or a new chat message
  const old = $("generated"); if (old) old.removeAttribute("id");
  if (chat()) {
    history.push({ role: "user", content: $("prompt").value });
    addMessage("user", $("prompt").value);
    const gen = addMessage("assistant", ""); gen.id = "generated";
    return gen;
  }
  const out = $("output");
  out.textContent = "";
  const p = document.createElement("span"); p.className = "prompt"; p.textContent = $("prompt").value;
  const gen = document.createElement("span"); gen.id = "generated";
  out.append(p, gen);
  return gen;
}

async function generate() {
  const gen = startOutput();
  const url = chat() ? "/v1/chat/completions" : "/v1/completions";
  $("status").textContent = "generating...";
  $("status").className = "";
  $("generate").disabled = true; $("stop").disabled = false;
  controller = new AbortController();
  const headers = { "Content-Type": "application/json" };
  if ($("api_key").value) headers["Authorization"] = "Bearer " + $("api_key").value;
  const t0 = performance.now();
  let tokens = 0, finish = null, failed = false;
  try {
    const resp = await fetch(url, { method: "POST", headers, body: JSON.stringify(settings()),
                                                   signal: controller.signal });
    if (!resp.ok) {
      const err = await resp.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || resp.statusText);
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\\n\\n")) >= 0) {
        const line = buf.slice(0, cut).trim(); buf = buf.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const msg = JSON.parse(data);
        if (msg.error) throw new Error(msg.error.message);
        for (const c of msg.choices) {
          gen.textContent += chat() ? ((c.delta && c.delta.content) || "") : c.text;
          tokens += 1; if (c.finish_reason) finish = c.finish_reason;
        }
      }
    }
    const s = (performance.now() - t0) / 1000;
    $("status").textContent = `done (${finish || "end"}): ${tokens} chunks in ${s.toFixed(2)} s`;
  } catch (e) {
    if (e.name === "AbortError") { $("status").textContent = "stopped"; }
    else { $("status").textContent = "error: " + e.message; $("status").className = "error"; failed = true; }
  } finally {
    if (chat() && failed) history.pop();  // the message that got no answer is not part of the conversation
    else if (chat()) { history.push({ role: "assistant", content: gen.textContent }); $("prompt").value = ""; }
    $("generate").disabled = false; $("stop").disabled = true; controller = null;
  }
}

function setMode() {
  document.body.className = $("mode").value;
  $("generate").textContent = chat() ? "Send" : "Generate";
  $("prompt").placeholder = chat() ? "Type a message" : "Type a prompt";
}
$("mode").addEventListener("change", setMode);
$("reset").addEventListener("click", () => { history.length = 0; $("chat_log").textContent = ""; });
$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(); });
</script>
</body>
</html>
"""


def render_page(server) -> str:
    return (PAGE.replace("__MODEL__", html.escape(server.model_name))
            .replace("__MAX_TOKENS__", str(server.limits["max_tokens"]))
            .replace("__KEY_HINT__", "required" if server.api_key else "not needed"))
