// comfypack front-end extension: Serve / Pack / Deploy from the canvas, and the typed API panel.
//
// Uses the extension APIs of ComfyUI's frontend (comfyui-frontend-package 1.32 to 1.58): top-bar
// `actionBarButtons`, `commands` + `menuCommands` (a "comfypack" menu), `settings` (a switch that
// hides the buttons) and the workspace toast. The server side is custom_nodes/comfypack_nodes/
// routes.py (/comfypack/...): long steps are jobs the panel polls, so its progress is the server's.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SETTING_SHOW = "Comfypack.ShowButtons";
const POLL_MS = 400;

// ---------------------------------------------------------------------------------------------
// server calls

class ComfypackError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.type = error?.type || "http_error";
    this.details = error?.details ?? null;
  }
}

async function call(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await api.fetchApi(path, init);
  } catch (e) {
    throw new ComfypackError(0, { type: "network_error", message: `cannot reach ComfyUI: ${e}` });
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    throw new ComfypackError(res.status, data?.error ?? { message: `HTTP ${res.status} from ${path}` });
  }
  return data;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function currentWorkflow() {
  const prompt = await app.graphToPrompt();
  const wf = app.extensionManager?.workflow?.activeWorkflow;
  const name = wf?.filename || wf?.path || "workflow";
  return { workflow: prompt.output, ui_workflow: prompt.workflow, name };
}

function toast(severity, detail, life = 6000) {
  try {
    app.extensionManager?.toast?.add({ severity, summary: "comfypack", detail, life });
  } catch (e) {
    console.warn("comfypack:", detail, e);
  }
}

// ---------------------------------------------------------------------------------------------
// the panel

// z-index 10001: above the frontend's dialog layer (PrimeVue masks ~1100 up to 1.45; 1.58's dialog
// overlay 1700) and its toasts (PrimeVue's top-right ones at 10000, 1.58's toast viewport at 9999),
// so neither covers the panel the user opened; it closes with its × and never blocks the canvas
// beyond its own box. pointer-events: auto because a modal dialog of 1.58 (Reka) sets
// `pointer-events: none` on <body> while open: inherited, clicks on the panel would fall through
// to the toasts beneath it. The panel also carries `data-dismissable-layer`, the mark by which 1.58
// tells its other overlays (popovers, toasts) from "outside": a click in the panel leaves the
// frontend's open dialog open.
const CSS = `
#comfypack-panel { position: fixed; top: 64px; right: 16px; width: 560px; max-width: calc(100vw - 32px);
  max-height: calc(100vh - 96px); overflow: auto; z-index: 10001; pointer-events: auto; background: var(--comfy-menu-bg, #222);
  color: var(--fg-color, #ddd); border: 1px solid var(--border-color, #444); border-radius: 10px;
  box-shadow: 0 8px 28px rgba(0,0,0,.45); font: 13px/1.45 system-ui, sans-serif; padding: 12px 14px; }
#comfypack-panel h3 { margin: 0; font-size: 15px; }
#comfypack-panel h4 { margin: 12px 0 4px; font-size: 13px; opacity: .85; }
#comfypack-panel .cp-head { display: flex; align-items: center; justify-content: space-between; gap: 8px; }
#comfypack-panel .cp-close { background: none; border: none; color: inherit; font-size: 18px; cursor: pointer; }
#comfypack-panel .cp-status { margin-top: 8px; }
#comfypack-panel .cp-bar { height: 6px; background: var(--comfy-input-bg, #333); border-radius: 3px; overflow: hidden; margin-top: 4px; }
#comfypack-panel .cp-bar > div { height: 100%; width: 0; background: #4c9be8; transition: width .2s; }
#comfypack-panel[data-state=ready] .cp-bar > div, #comfypack-panel[data-state=done] .cp-bar > div { background: #3fb950; }
#comfypack-panel[data-state=error] .cp-bar > div { background: #e5534b; }
#comfypack-panel .cp-error { margin-top: 8px; padding: 8px; border-radius: 6px; background: rgba(229,83,75,.15);
  border: 1px solid rgba(229,83,75,.6); white-space: pre-wrap; }
#comfypack-panel .cp-error ul { margin: 4px 0 0 16px; padding: 0; }
#comfypack-panel table { width: 100%; border-collapse: collapse; font-size: 12px; }
#comfypack-panel th, #comfypack-panel td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--border-color, #444); vertical-align: top; }
#comfypack-panel code, #comfypack-panel pre { font-family: ui-monospace, monospace; font-size: 12px; }
#comfypack-panel pre { background: var(--comfy-input-bg, #111); padding: 8px; border-radius: 6px; white-space: pre-wrap; word-break: break-all; margin: 4px 0; }
#comfypack-panel .cp-actions { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 10px; }
#comfypack-panel .cp-actions:empty { display: none; }
#comfypack-panel button.cp-btn, #comfypack-panel a.cp-btn { background: var(--comfy-input-bg, #333); color: inherit; border: 1px solid var(--border-color, #555);
  border-radius: 6px; padding: 4px 10px; cursor: pointer; text-decoration: none; font-size: 12px; }
#comfypack-panel button.cp-btn:disabled { opacity: .45; cursor: not-allowed; }
#comfypack-panel .cp-muted { opacity: .7; font-size: 12px; }
#comfypack-panel .cp-log pre { max-height: 180px; overflow: auto; }
body.comfypack-hide-buttons .comfypack-action { display: none !important; }
`;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fmtBytes(n) {
  if (!n) return "0 B";
  const u = ["B", "KB", "MB", "GB", "TB"];
  const i = Math.min(u.length - 1, Math.floor(Math.log(n) / Math.log(1024)));
  return `${(n / 1024 ** i).toFixed(i ? 1 : 0)} ${u[i]}`;
}

function shellQuote(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

function curlLine(url, example) {
  return `curl -X POST ${shellQuote(url)} -H 'Content-Type: application/json' -d ${shellQuote(JSON.stringify(example ?? {}))}`;
}

function bounds(i) {
  if (i.options) return i.options.join(" | ");
  const parts = [];
  if (i.minimum !== undefined || i.maximum !== undefined) parts.push(`${i.minimum ?? "−∞"} .. ${i.maximum ?? "∞"}`);
  if (i.step !== undefined) parts.push(`step ${i.step}`);
  if (i.max_length) parts.push(`≤ ${i.max_length} chars`);
  return parts.join(", ");
}

class Panel {
  static current = null;

  static open(title) {
    Panel.current?.el.remove();
    const p = new Panel(title);
    Panel.current = p;
    return p;
  }

  constructor(title) {
    this.title = h("h3", {}, `comfypack · ${title}`);
    this.statusText = h("div", { class: "cp-status-text" });
    this.bar = h("div");
    this.status = h("div", { class: "cp-status" }, this.statusText, h("div", { class: "cp-bar" }, this.bar));
    this.error = h("div", { class: "cp-error", hidden: "" });
    this.body = h("div", { class: "cp-body" });
    this.actions = h("div", { class: "cp-actions" });
    this.logPre = h("pre");
    this.log = h("details", { class: "cp-log", hidden: "" }, h("summary", {}, "log"), this.logPre);
    this.el = h("div", { id: "comfypack-panel", "data-state": "working", "data-dismissable-layer": "", role: "dialog",
      "aria-label": `comfypack ${title}` },
      h("div", { class: "cp-head" }, this.title,
        h("button", { class: "cp-close", title: "Close", "aria-label": "Close", onclick: () => this.close() }, "×")),
      this.status, this.error, this.actions, this.body, this.log);
    document.body.append(this.el);
    this.place();
  }

  place() {
    // below the top bar's buttons (the action bar can be dragged; find them where they are now)
    const anchor = document.querySelector(".comfypack-action:not([hidden])")?.getBoundingClientRect();
    const top = anchor && anchor.bottom > 0 && anchor.bottom < window.innerHeight / 2 ? anchor.bottom + 10 : 64;
    this.el.style.top = `${Math.round(top)}px`;
    this.el.style.maxHeight = `calc(100vh - ${Math.round(top) + 24}px)`;
  }

  get closed() {
    return Panel.current !== this;
  }

  close() {
    this.el.remove();
    if (Panel.current === this) Panel.current = null;
  }

  setState(state, text, fraction) {
    this.el.dataset.state = state;
    if (text !== undefined) this.statusText.textContent = text;
    if (fraction !== undefined) this.bar.style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
  }

  showLog(lines) {
    if (!lines?.length) return;
    this.log.hidden = false;
    this.logPre.textContent = lines.join("\n");
    this.logPre.scrollTop = this.logPre.scrollHeight;
  }

  fail(err) {
    const message = err?.message || String(err);
    this.setState("error", "Failed", 1);
    this.error.hidden = false;
    this.error.replaceChildren(h("strong", {}, message));
    const details = Array.isArray(err?.details) ? err.details : [];
    const items = details.filter((d) => d && typeof d === "object" && d.message && (details.length > 1 || d.nodes?.length))
      .map((d) => h("li", {}, details.length > 1 ? d.message : "",
        d.nodes?.length ? `${details.length > 1 ? " — " : ""}node${d.nodes.length > 1 ? "s" : ""} ${d.nodes.join(", ")} (selected on the canvas)` : ""));
    if (items.length) this.error.append(h("ul", {}, items));
    if (err?.details && !Array.isArray(err.details) && err.details.output) this.showLog(String(err.details.output).split("\n"));
    const nodeIds = details.flatMap((d) => d?.nodes || []);
    if (nodeIds.length) selectNodes(nodeIds);
    toast("error", message, 10000);
  }

  showApi(doc, url) {
    this.doc = doc;
    const rows = (doc.inputs || []).map((i) => h("tr", { "data-field": i.name },
      h("td", {}, h("code", {}, i.name)), h("td", {}, i.kind),
      h("td", {}, i.default === undefined ? "" : h("code", {}, JSON.stringify(i.default))),
      h("td", {}, bounds(i)), h("td", {}, i.required ? "yes" : ""), h("td", { class: "cp-muted" }, i.description || "")));
    const outputs = (doc.outputs || []).map((o) => h("tr", { "data-output": o.name },
      h("td", {}, h("code", {}, o.name)), h("td", {}, o.kind + (o.format ? ` (${o.format})` : "")), h("td", { class: "cp-muted" }, `node ${o.node_id}`)));
    this.curl = h("pre", { class: "cp-curl" });
    this.api = h("div", { class: "cp-api" },
      h("h4", {}, "Call it"), this.curl,
      h("button", { class: "cp-btn", onclick: () => navigator.clipboard?.writeText(this.curl.textContent).then(() => toast("success", "curl line copied", 2000)) }, "Copy curl"),
      h("h4", {}, `Inputs (${rows.length})`),
      rows.length ? h("table", {}, h("thead", {}, h("tr", {}, ["name", "type", "default", "bounds / options", "required", "description"].map((c) => h("th", {}, c)))), h("tbody", {}, rows))
        : h("div", { class: "cp-muted" }, "No comfypack input nodes: the endpoint takes no inputs."),
      h("h4", {}, `Outputs (${outputs.length})`),
      outputs.length ? h("table", {}, h("tbody", {}, outputs)) : h("div", { class: "cp-muted" }, "No outputs."),
      doc.fallback_outputs ? h("div", { class: "cp-muted" }, "No comfypack output nodes: SaveImage / PreviewImage outputs are returned.") : null);
    if (!url) this.curl.after(h("div", { class: "cp-muted" }, "Once served: Serve here, or `comfypack serve` (port 3000 by default)."));
    this.body.replaceChildren(this.api);
    this.setUrl(url || "http://127.0.0.1:3000/generate");
  }

  setUrl(url) {
    if (this.curl && this.doc) this.curl.textContent = curlLine(url, this.doc.example_request);
  }

  progressFrom(job) {
    const stage = job.stages?.length ? `${job.stage_index + 1}/${job.stages.length} ${job.stage}` : job.stage;
    const bytes = job.bytes_total ? ` — ${fmtBytes(job.bytes_done)} of ${fmtBytes(job.bytes_total)}` : "";
    const msg = job.message && job.message !== job.stage ? ` (${job.message})` : "";
    this.setState("working", `${stage}${msg}${bytes} · ${Math.round(job.elapsed_s)} s`, job.progress);
    this.showLog(job.log);
  }
}

function selectNodes(ids) {
  try {
    const nodes = ids.map((id) => app.graph.getNodeById(Number(id))).filter(Boolean);
    if (nodes.length) app.canvas.selectNodes(nodes);
  } catch (e) {
    console.warn("comfypack: cannot select nodes", e);
  }
}

async function pollJob(jobId, panel) {
  for (;;) {
    const job = await call("GET", `/comfypack/jobs/${jobId}`);
    if (job.state === "done") return job;
    if (job.state === "failed") {
      panel.showLog(job.log);
      throw new ComfypackError(job.error?.status || 500, job.error);
    }
    if (!panel.closed) panel.progressFrom(job);
    await sleep(POLL_MS);
  }
}

function triggerDownload(url, filename) {
  const a = h("a", { href: api.apiURL(url), download: filename });
  document.body.append(a);
  a.click();
  a.remove();
}

// ---------------------------------------------------------------------------------------------
// actions

async function showApi() {
  const panel = Panel.open("API");
  panel.setState("working", "Reading the workflow's typed interface…", 0.3);
  try {
    const req = await currentWorkflow();
    const doc = await call("POST", "/comfypack/interface", { workflow: req.workflow });
    panel.showApi(doc);
    panel.setState("done", `${doc.inputs.length} input(s), ${doc.outputs.length} output(s) · Serve it to try it`, 1);
  } catch (e) {
    panel.fail(e);
  }
}

async function serve() {
  const panel = Panel.open("Serve");
  panel.setState("working", "Checking the workflow's interface…", 0.05);
  try {
    const req = await currentWorkflow();
    let svc = await call("POST", "/comfypack/serve", { ...req, replace: true });
    panel.showApi(svc.interface, svc.endpoint_url);
    panel.el.dataset.serviceId = svc.id;
    while (svc.state === "starting") {
      const n = svc.stages.length;
      panel.setState("working", `${svc.stage_index + 1}/${n} ${svc.stage} · ${Math.round(svc.elapsed_s)} s`, svc.progress);
      panel.showLog(svc.log);
      await sleep(POLL_MS);
      svc = await call("GET", `/comfypack/serve/${svc.id}`);
    }
    panel.showLog(svc.log);
    if (svc.state !== "ready") throw new ComfypackError(500, { message: svc.error || `the service is ${svc.state}`, details: { output: (svc.log || []).join("\n") } });
    showService(panel, svc);
    toast("success", `Serving ${svc.name} at ${svc.endpoint_url}`);
  } catch (e) {
    panel.fail(e);
  }
}

function showService(panel, svc) {
  Object.assign(panel.el.dataset, { port: String(svc.port), url: svc.url, endpointUrl: svc.endpoint_url });
  panel.setState("ready", `Serving at ${svc.endpoint_url} (ready in ${Math.round(svc.elapsed_s)} s)`, 1);
  panel.setUrl(svc.endpoint_url);
  const stop = h("button", { class: "cp-btn cp-stop", onclick: async () => {
    stop.disabled = true;
    try {
      const r = await call("DELETE", `/comfypack/serve/${svc.id}`);
      panel.setState("done", `Stopped (${r.killed ? "killed after the grace period" : "exited"})`, 1);
      toast("info", `Stopped the ${svc.name} service`);
    } catch (e) {
      panel.fail(e);
    }
  } }, "Stop service");
  panel.actions.replaceChildren(
    h("a", { class: "cp-btn cp-docs", href: svc.docs_url, target: "_blank", rel: "noopener" }, "Open /docs"),
    h("a", { class: "cp-btn", href: svc.endpoint_url, target: "_blank", rel: "noopener" }, svc.endpoint_url), stop);
}

async function pack() {
  const panel = Panel.open("Pack");
  panel.setState("working", "Checking the workflow's interface…", 0.02);
  try {
    const req = await currentWorkflow();
    const started = await call("POST", "/comfypack/pack", req);
    panel.showApi(started.interface);
    const job = await pollJob(started.job_id, panel);
    const r = job.result;
    const missing = r.lock?.missing_sources?.length ? ` · no download source for ${r.lock.missing_sources.join(", ")}` : "";
    panel.setState("done", `Packed ${r.filename} (${fmtBytes(r.size)}; ${r.lock?.models ?? 0} model(s) locked, ${r.lock?.packages ?? 0} packages) in ${Math.round(job.elapsed_s)} s${missing}`, 1);
    panel.el.dataset.downloadUrl = r.download_url;
    panel.actions.replaceChildren(h("a", { class: "cp-btn cp-download", href: api.apiURL(r.download_url), download: r.filename }, `Download ${r.filename}`));
    panel.showLog(job.log);
    triggerDownload(r.download_url, r.filename);
  } catch (e) {
    panel.fail(e);
  }
}

async function deploy() {
  const panel = Panel.open("Deploy");
  panel.setState("working", "Checking what this comfypack can build and deploy…", 0.2);
  try {
    const caps = await call("GET", "/comfypack/capabilities");
    panel.setState("done", caps.comfypack ? `comfypack ${caps.comfypack}` : "comfypack is not installed in ComfyUI's Python", 1);
    const notes = [];
    if (!caps.build) notes.push("`comfypack build` is not available in this version of comfypack.");
    if (!caps.deploy) notes.push("`comfypack deploy` is not available in this version of comfypack.");
    else if (!caps.bentocloud?.logged_in) notes.push("Not logged in to BentoCloud: run `bentoml cloud login` in a terminal on the machine that runs ComfyUI (API keys are never entered here).");
    else notes.push(`BentoCloud: ${caps.bentocloud.context || "logged in"} (${caps.bentocloud.how}).`);
    panel.body.replaceChildren(h("div", {}, notes.map((n) => h("p", { class: "cp-muted" }, n))),
      h("p", { class: "cp-muted" }, "Pack works everywhere: the .cpack.zip builds with `comfypack build` on any machine."));
    const run = (command, extra = {}) => async () => {
      for (const b of panel.actions.querySelectorAll("button")) b.disabled = true;
      panel.setState("working", "Checking the workflow's interface…", 0.02);
      try {
        const req = await currentWorkflow();
        const started = await call("POST", `/comfypack/${command}`, { ...req, ...extra });
        const job = await pollJob(started.job_id, panel);
        const r = job.result;
        const what = command === "build" ? "Built" : extra.dry_run ? "Deployment preview for" : "Deployed";
        panel.setState("done", `${what}${r.bento ? ` ${r.bento}` : ""} in ${Math.round(job.elapsed_s)} s`, 1);
        panel.el.dataset.bento = r.bento || "";
        const shown = r.json !== undefined ? JSON.stringify(r.json, null, 2) : r.output || "";
        panel.body.replaceChildren(...[
          command === "build" && r.bento ? h("p", {}, "Serve it: ", h("code", {}, `bentoml serve ${r.bento}`), " · image: ", h("code", {}, "comfypack containerize PACK")) : null,
          h("pre", { class: "cp-result" }, shown)].filter(Boolean));
        panel.showLog(job.log);
        toast("success", `${what}${r.bento ? ` ${r.bento}` : ""}`);
      } catch (e) {
        panel.fail(e);
      } finally {
        for (const b of panel.actions.querySelectorAll("button")) b.disabled = b.dataset.enabled !== "1";
      }
    };
    const can = (ok) => (ok ? { "data-enabled": "1" } : { disabled: "" });
    panel.actions.replaceChildren(
      h("button", { class: "cp-btn cp-build", onclick: run("build"), ...can(caps.build) }, "Build Bento"),
      h("button", { class: "cp-btn cp-preview", onclick: run("deploy", { dry_run: true }), ...can(caps.deploy) }, "Preview deployment"),
      h("button", { class: "cp-btn cp-deploy", onclick: run("deploy"), ...can(caps.deploy && caps.bentocloud?.logged_in) }, "Deploy to BentoCloud"),
      h("button", { class: "cp-btn", onclick: pack, "data-enabled": "1" }, "Pack instead"));
  } catch (e) {
    panel.fail(e);
  }
}

async function stopAll() {
  try {
    const { services } = await call("GET", "/comfypack/serve");
    const live = services.filter((s) => s.state === "starting" || s.state === "ready");
    for (const s of live) await call("DELETE", `/comfypack/serve/${s.id}`);
    toast("info", live.length ? `Stopped ${live.length} comfypack service(s)` : "No comfypack service is running");
  } catch (e) {
    toast("error", e.message || String(e));
  }
}

function applyShowButtons(show) {
  document.body.classList.toggle("comfypack-hide-buttons", show === false);
}

// ---------------------------------------------------------------------------------------------

app.registerExtension({
  name: "comfypack",
  commands: [
    { id: "Comfypack.ShowApi", label: "Show the typed API", menubarLabel: "Show API", icon: "pi pi-code", function: showApi },
    { id: "Comfypack.Serve", label: "Serve this workflow (local comfypack service)", menubarLabel: "Serve", icon: "pi pi-play", function: serve },
    { id: "Comfypack.Pack", label: "Pack this workflow (.cpack.zip)", menubarLabel: "Pack", icon: "pi pi-box", function: pack },
    { id: "Comfypack.Deploy", label: "Build / deploy this workflow", menubarLabel: "Deploy", icon: "pi pi-cloud-upload", function: deploy },
    { id: "Comfypack.StopAll", label: "Stop all comfypack services", menubarLabel: "Stop services", icon: "pi pi-stop", function: stopAll },
  ],
  menuCommands: [{ path: ["comfypack"], commands: ["Comfypack.ShowApi", "Comfypack.Serve", "Comfypack.Pack", "Comfypack.Deploy", "Comfypack.StopAll"] }],
  actionBarButtons: [
    { icon: "pi pi-play", label: "Serve", tooltip: "comfypack: serve this workflow as a typed REST API", class: "comfypack-action comfypack-serve", onClick: serve },
    { icon: "pi pi-box", label: "Pack", tooltip: "comfypack: download a reproducible .cpack.zip", class: "comfypack-action comfypack-pack", onClick: pack },
    { icon: "pi pi-cloud-upload", label: "Deploy", tooltip: "comfypack: build a Bento / deploy to BentoCloud", class: "comfypack-action comfypack-deploy", onClick: deploy },
  ],
  settings: [
    {
      id: SETTING_SHOW,
      category: ["comfypack", "Buttons", "Show"],
      name: "Show the Serve / Pack / Deploy buttons in the top bar",
      tooltip: "The comfypack menu keeps working when they are hidden.",
      type: "boolean",
      defaultValue: true,
      onChange: (value) => applyShowButtons(value),
    },
  ],
  setup() {
    document.head.append(h("style", { id: "comfypack-style" }, CSS));
    try {
      applyShowButtons(app.extensionManager?.setting?.get(SETTING_SHOW));
    } catch {
      // settings not ready: onChange applies it
    }
  },

  // The frontend's "Comfy.UploadAudio" gives every node whose `audio` combo has audio_upload an
  // upload button, which looks up an `audioUI` player widget when it is created — a widget only
  // LoadAudio & co get ("Comfy.AudioWidget"). Without it ComfyPack Audio Input cannot even be
  // created on the canvas. Give it the player (before the button) and keep the player out of the
  // API prompt. comfypack/workflow/uiformat.py mirrors this when it converts UI-format workflows.
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== "ComfyPackInputAudio" || !nodeData.input?.required) return;
    const { upload, ...rest } = nodeData.input.required;
    nodeData.input.required = { ...rest, audioUI: ["AUDIO_UI", {}], ...(upload ? { upload } : {}) };
  },
  nodeCreated(node) {
    if (node?.comfyClass !== "ComfyPackInputAudio") return;
    const player = node.widgets?.find((w) => w.name === "audioUI");
    if (player) player.options = { ...player.options, serialize: false };
  },
});
