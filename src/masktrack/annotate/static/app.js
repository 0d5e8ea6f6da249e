// masktrack annotate: click prompts on one video, save the versioned prompt file.
// Vanilla JS, no build step. Image coordinates follow the prompt format:
// (x, y) with integer values at pixel centres, so pixel i spans [i-0.5, i+0.5].
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");

const S = {
  video: null,            // {name, num_frames, width, height, palette}
  objects: [],            // [{name, id, color|null, rgb, kf: {frame: {points, labels, boxes, mask?}}}]
  current: 0,             // index into objects
  frame: 0,
  revision: null,
  path: "",
  sourceFormat: "",
  dirty: false,
  history: [],
  errors: [],             // from the server (load/save)
  serverWarnings: [],
  view: { scale: 1, ox: 0, oy: 0 },
  preview: { on: false, seq: 0, canvas: null, frame: -1, object: "", note: "", error: false, timer: 0 },
  saving: false,
  loadFailed: false,      // the file on disk did not parse: saving asks first
};
const images = new Map(); // frame index -> HTMLImageElement
const MAX_IMAGES = 300;
const DRAG_PX = 5;

// ---------- helpers ----------
const rgbCss = (c, a = 1) => `rgba(${c[0]},${c[1]},${c[2]},${a})`;
const round2 = (v) => Math.round(v * 100) / 100;
const cur = () => S.objects[S.current];
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
};
function kfOf(obj, frame, create = false) {
  let k = obj.kf[frame];
  if (!k && create) k = obj.kf[frame] = { points: [], labels: [], boxes: [] };
  return k;
}
const isEmptyKf = (k) => !k || (!k.points.length && !k.boxes.length && !k.mask);
function framesOf(obj) {
  return Object.keys(obj.kf).map(Number).filter((f) => !isEmptyKf(obj.kf[f])).sort((a, b) => a - b);
}
function counts(k) {
  const pos = k.labels.filter((l) => l === 1).length;
  return { pos, neg: k.labels.length - pos, box: k.boxes.length, mask: !!k.mask };
}

// ---------- edits (every edit snapshots for undo) ----------
function snapshot() {
  S.history.push(JSON.stringify({ objects: S.objects, current: S.current }));
  if (S.history.length > 500) S.history.shift();
}
function edited() {
  S.dirty = true;
  renderAll();
  schedulePreview();
}
function undo() {
  const prev = S.history.pop();
  if (!prev) return note("nothing to undo");
  const st = JSON.parse(prev);
  S.objects = st.objects;
  S.current = Math.min(st.current, S.objects.length - 1);
  edited();
}
function addPoint(x, y, label) {
  const o = cur();
  if (!o) return note("add an object first");
  snapshot();
  const k = kfOf(o, S.frame, true);
  k.points.push([round2(x), round2(y)]);
  k.labels.push(label);
  edited();
}
function addBox(x0, y0, x1, y1) {
  const o = cur();
  if (!o) return note("add an object first");
  snapshot();
  kfOf(o, S.frame, true).boxes.push([round2(x0), round2(y0), round2(x1), round2(y1)]);
  edited();
}
function deletePoint(i) {
  const k = kfOf(cur(), S.frame);
  if (!k || i >= k.points.length) return;
  snapshot();
  k.points.splice(i, 1);
  k.labels.splice(i, 1);
  edited();
}
function deleteBox(i) {
  const k = kfOf(cur(), S.frame);
  if (!k || i >= k.boxes.length) return;
  snapshot();
  k.boxes.splice(i, 1);
  edited();
}
function clearFrame(all) {
  const objs = all ? S.objects : [cur()].filter(Boolean);
  if (!objs.some((o) => !isEmptyKf(o.kf[S.frame]))) return;
  snapshot();
  for (const o of objs) {
    const k = o.kf[S.frame];
    if (!k) continue;
    k.points = []; k.labels = []; k.boxes = [];
  }
  edited();
}
function addObject(name) {
  name = name.trim();
  if (!/^[A-Za-z0-9_-]+$/.test(name)) { note("object names use letters, digits, '_' and '-' only", true); return false; }
  if (S.objects.some((o) => o.name === name)) { note(`object ${name} exists already`, true); return false; }
  snapshot();
  const id = Math.max(0, ...S.objects.map((o) => o.id)) + 1;
  const pal = S.video.palette;
  S.objects.push({ name, id, color: null, rgb: pal[(id - 1) % pal.length], kf: {} });
  S.current = S.objects.length - 1;
  edited();
  return true;
}

// ---------- left/right swap warning (same rule as masktrack.annotate.checks) ----------
function objectSide(name) {
  const words = new Set(name.toLowerCase().split(/[^a-z]+/));
  if (words.has("left") && !words.has("right")) return "left";
  if (words.has("right") && !words.has("left")) return "right";
  return null;
}
function sideWarnings() {
  const out = [];
  const mid = (S.video.width - 1) / 2;
  for (const o of S.objects) {
    const side = objectSide(o.name);
    if (!side) continue;
    for (const f of framesOf(o)) {
      const k = o.kf[f];
      const xs = k.points.filter((_, i) => k.labels[i] === 1).map((p) => p[0]);
      for (const b of k.boxes) xs.push((b[0] + b[2]) / 2);
      if (!xs.length) continue;
      const wrong = xs.filter((x) => (side === "left" ? x > mid : x < mid)).length;
      if (wrong * 2 > xs.length) {
        const other = side === "left" ? "right" : "left";
        out.push({ frame: f, text: `${o.name}, frame ${f}: ${wrong} of ${xs.length} positive prompts lie in the ${other} half of the image — left/right swapped?` });
      }
    }
  }
  return out;
}

// ---------- server I/O ----------
async function api(path, opts = {}) {
  const r = await fetch(path, opts);
  let body = null;
  const ct = r.headers.get("content-type") || "";
  if (ct.includes("application/json")) body = await r.json();
  return { r, body };
}
async function loadVideo() {
  const { r, body } = await api("/api/video");
  if (!r.ok) throw new Error("cannot load video info");
  S.video = body;
  $("video-name").textContent = `${body.name} · ${body.num_frames} frames · ${body.width}×${body.height}`;
  $("scrubber").max = String(body.num_frames - 1);
}
async function loadPrompts() {
  const { r, body } = await api("/api/prompts");
  if (!r.ok) { S.errors = [`cannot load prompts (${r.status})`]; return renderAll(); }
  const keep = cur() ? cur().name : null;
  S.revision = body.revision;
  S.path = body.path;
  S.sourceFormat = body.source_format;
  S.objects = body.prompts.objects.map((o) => {
    const kf = {};
    for (const k of o.keyframes || []) {
      const t = kfOf({ kf }, k.frame, true);
      t.points.push(...(k.points || []));
      t.labels.push(...(k.labels || []));
      t.boxes.push(...(k.boxes || []));
      if (k.mask) t.mask = k.mask;
    }
    return { name: o.name, id: o.id, color: o.color ?? null, rgb: body.colors[o.name], kf };
  });
  const idx = S.objects.findIndex((o) => o.name === keep);
  S.current = idx >= 0 ? idx : 0;
  S.history = [];
  S.dirty = false;
  S.loadFailed = !!(body.load_error && body.load_error.length);
  S.errors = [...(body.load_error || [])];
  if (body.load_error && body.load_error.length) S.errors.unshift("The prompt file could not be loaded; saving will replace it:");
  for (const p of body.problems || []) S.errors.push(`${p.location}: ${p.message}`);
  S.serverWarnings = body.source_format === "legacy"
    ? ["Loaded the legacy sam3.annotation_prompts.v1 format; saving writes the masktrack.prompts v1 format (the original is kept as *.legacy.json)."]
    : [];
  renderAll();
  schedulePreview();
}
function exportPrompts() {
  return {
    format: "masktrack.prompts",
    version: 1,
    objects: S.objects.map((o) => {
      const out = { name: o.name, id: o.id };
      if (o.color) out.color = o.color;
      out.keyframes = framesOf(o).map((f) => {
        const k = o.kf[f];
        const e = { frame: f, points: k.points, labels: k.labels, boxes: k.boxes };
        if (k.mask) e.mask = k.mask;
        return e;
      });
      return out;
    }),
  };
}
async function save(force = false) {
  if (S.saving) return;
  if (S.loadFailed && !force && !window.confirm("The prompt file on disk could not be loaded. Replace it with what is on this page?")) return;
  S.saving = true;
  setSaveState("saving…", "");
  try {
    const { r, body } = await api("/api/prompts", {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ revision: S.revision, force, prompts: exportPrompts() }),
    });
    if (r.ok) {
      S.loadFailed = false;
      S.revision = body.revision;
      S.dirty = false;
      S.errors = [];
      S.serverWarnings = [];
      note("saved " + S.path.split(/[\\/]/).pop());
    } else if (r.status === 409) {
      $("conflict").classList.remove("hidden");
    } else {
      S.errors = [body && body.detail ? body.detail : `save failed (${r.status})`];
      for (const p of (body && body.problems) || []) S.errors.push(`${p.location}: ${p.message}`);
    }
  } catch (e) {
    S.errors = [`save failed: ${e}`];
  } finally {
    S.saving = false;
    renderAll();
  }
}

// ---------- live preview ----------
function schedulePreview() {
  clearTimeout(S.preview.timer);
  if (!S.preview.on) return;
  S.preview.timer = setTimeout(runPreview, 120);
}
async function runPreview() {
  const P = S.preview;
  const o = cur();
  const seq = ++P.seq;
  const k = o && kfOf(o, S.frame);
  if (!o || !k || (!k.points.length && !k.boxes.length)) {
    P.canvas = null;
    showPreviewNote("preview: no clicks for this object on this frame", false);
    return draw();
  }
  showPreviewNote("preview: computing…", false);
  const frame = S.frame, name = o.name, rgb = o.rgb;
  try {
    const r = await fetch("/api/preview", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ object: name, frame, points: k.points, labels: k.labels, boxes: k.boxes }),
    });
    if (seq !== P.seq) return;
    if (!r.ok) {
      let msg = `preview failed (${r.status})`;
      try { const b = await r.json(); msg = b.detail + (b.problems && b.problems.length ? ": " + b.problems.map((p) => p.message).join("; ") : ""); } catch (_) { /* not JSON */ }
      P.canvas = null;
      showPreviewNote(msg, true);
      return draw();
    }
    const bmp = await createImageBitmap(await r.blob());
    if (seq !== P.seq) return;
    const c = document.createElement("canvas");
    c.width = bmp.width; c.height = bmp.height;
    const g = c.getContext("2d");
    g.drawImage(bmp, 0, 0);
    g.globalCompositeOperation = "source-in";
    g.fillStyle = rgbCss(rgb, 0.5);
    g.fillRect(0, 0, c.width, c.height);
    Object.assign(P, { canvas: c, frame, object: name });
    showPreviewNote(`preview: ${r.headers.get("X-Backend")} · ${r.headers.get("X-Mask-Area")} px · ${r.headers.get("X-Preview-Ms")} ms`, false);
    draw();
  } catch (e) {
    if (seq !== P.seq) return;
    P.canvas = null;
    showPreviewNote(`preview failed: ${e}`, true);
    draw();
  }
}
function showPreviewNote(text, isError) {
  const n = $("preview-status");
  S.preview.note = text;
  S.preview.error = isError;
  n.textContent = text;
  n.classList.toggle("error", isError);
  n.classList.toggle("hidden", !S.preview.on);
}
function setPreview(on) {
  S.preview.on = on;
  $("preview-toggle").checked = on;
  if (!on) { S.preview.canvas = null; $("preview-status").classList.add("hidden"); draw(); }
  else schedulePreview();
}

// ---------- frames ----------
function frameImage(i) {
  let img = images.get(i);
  if (!img) {
    img = new Image();
    img.decoding = "async";
    img.onload = () => { if (i === S.frame) draw(); };
    img.onerror = () => { if (i === S.frame) note(`frame ${i} could not be loaded`, true); };
    img.src = `/api/frame/${i}?v=${S.video.token}`;
    images.set(i, img);
    if (images.size > MAX_IMAGES) images.delete(images.keys().next().value);
  }
  return img;
}
function setFrame(i) {
  if (!S.video) return;
  i = Math.max(0, Math.min(S.video.num_frames - 1, Math.round(i)));
  S.frame = i;
  frameImage(i);
  for (const d of [1, 2, -1]) if (i + d >= 0 && i + d < S.video.num_frames) frameImage(i + d);
  renderAll();
  schedulePreview();
}
function jumpKeyframe(dir) {
  const o = cur();
  if (!o) return;
  const fs = framesOf(o);
  const t = dir > 0 ? fs.find((f) => f > S.frame) : [...fs].reverse().find((f) => f < S.frame);
  if (t !== undefined) setFrame(t);
}

// ---------- view (zoom/pan) ----------
let dpr = 1;
function resizeCanvas() {
  dpr = window.devicePixelRatio || 1;
  const r = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(r.width * dpr));
  canvas.height = Math.max(1, Math.round(r.height * dpr));
  draw();
}
function fit() {
  if (!S.video) return;
  const r = canvas.getBoundingClientRect();
  const pad = 16;
  const s = Math.min((r.width - 2 * pad) / S.video.width, (r.height - 2 * pad) / S.video.height);
  S.view.scale = Math.max(0.02, s);
  S.view.ox = (r.width - S.video.width * S.view.scale) / 2;
  S.view.oy = (r.height - S.video.height * S.view.scale) / 2;
  draw();
}
// screen (CSS px relative to the canvas) <-> image coordinates (pixel centres at integers)
const toImage = (sx, sy) => [(sx - S.view.ox) / S.view.scale - 0.5, (sy - S.view.oy) / S.view.scale - 0.5];
const toScreen = (x, y) => [S.view.ox + (x + 0.5) * S.view.scale, S.view.oy + (y + 0.5) * S.view.scale];
function zoomAt(sx, sy, factor) {
  const s = Math.min(64, Math.max(0.05, S.view.scale * factor));
  const [x, y] = toImage(sx, sy);
  S.view.scale = s;
  S.view.ox = sx - (x + 0.5) * s;
  S.view.oy = sy - (y + 0.5) * s;
  draw();
}
function inImage(x, y) {
  return x >= -0.5 && y >= -0.5 && x <= S.video.width - 0.5 && y <= S.video.height - 0.5;
}

// ---------- drawing ----------
function drawPoint(x, y, label, rgb, active) {
  const [sx, sy] = toScreen(x, y);
  const r = active ? 7 : 5;
  ctx.globalAlpha = active ? 1 : 0.7;
  ctx.beginPath();
  ctx.arc(sx, sy, r + 1.5, 0, 2 * Math.PI);
  ctx.fillStyle = "rgba(0,0,0,0.75)";
  ctx.fill();
  ctx.beginPath();
  ctx.arc(sx, sy, r, 0, 2 * Math.PI);
  ctx.fillStyle = label === 1 ? rgbCss(rgb) : "#16181c";
  ctx.fill();
  ctx.lineWidth = 2;
  ctx.strokeStyle = label === 1 ? "#ffffff" : rgbCss(rgb);
  ctx.stroke();
  // glyph: + for positive, − for negative
  ctx.beginPath();
  const g = r * 0.55;
  ctx.moveTo(sx - g, sy); ctx.lineTo(sx + g, sy);
  if (label === 1) { ctx.moveTo(sx, sy - g); ctx.lineTo(sx, sy + g); }
  ctx.lineWidth = 2;
  ctx.strokeStyle = label === 1 ? "#0b0d10" : "#ffffff";
  ctx.stroke();
  ctx.globalAlpha = 1;
}
function drawBox(b, rgb, active) {
  const [x0, y0] = toScreen(b[0], b[1]);
  const [x1, y1] = toScreen(b[2], b[3]);
  ctx.globalAlpha = active ? 1 : 0.7;
  ctx.lineWidth = 3.5;
  ctx.strokeStyle = "rgba(0,0,0,0.7)";
  ctx.setLineDash([]);
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  ctx.lineWidth = 2;
  ctx.strokeStyle = rgbCss(rgb);
  ctx.setLineDash(active ? [] : [6, 4]);
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  ctx.setLineDash([]);
  ctx.globalAlpha = 1;
}
function draw() {
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const w = canvas.width / dpr, h = canvas.height / dpr;
  ctx.fillStyle = "#0a0c0f";
  ctx.fillRect(0, 0, w, h);
  if (!S.video) return;
  const { scale, ox, oy } = S.view;
  const W = S.video.width * scale, H = S.video.height * scale;
  const img = images.get(S.frame);
  ctx.imageSmoothingEnabled = scale < 2;
  if (img && img.complete && img.naturalWidth) ctx.drawImage(img, ox, oy, W, H);
  else { ctx.fillStyle = "#1a1e24"; ctx.fillRect(ox, oy, W, H); }
  ctx.strokeStyle = "rgba(255,255,255,0.18)";
  ctx.lineWidth = 1;
  ctx.strokeRect(ox - 0.5, oy - 0.5, W + 1, H + 1);
  const P = S.preview;
  if (P.on && P.canvas && P.frame === S.frame && cur() && P.object === cur().name) {
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(P.canvas, ox, oy, W, H);
  }
  // other objects first, the current one on top
  const order = S.objects.map((_, i) => i).filter((i) => i !== S.current);
  if (cur()) order.push(S.current);
  for (const i of order) {
    const o = S.objects[i];
    const k = o.kf[S.frame];
    if (!k) continue;
    const active = i === S.current;
    for (const b of k.boxes) drawBox(b, o.rgb, active);
    k.points.forEach((p, j) => drawPoint(p[0], p[1], k.labels[j], o.rgb, active));
  }
  if (drag && drag.mode === "box") {
    const o = cur();
    const [a, b, c, d] = boxFromDrag();
    drawBox([a, b, c, d], o ? o.rgb : [255, 255, 255], true);
  }
  $("zoom-label").textContent = `${Math.round(scale * 100)}%`;
}

// ---------- rendering of the side panels ----------
function setSaveState(text, cls) {
  const s = $("save-state");
  s.textContent = text;
  s.className = "pill " + cls;
}
function renderObjects() {
  const ul = $("object-list");
  ul.replaceChildren();
  if (!S.objects.length) ul.append(el("li", { class: "empty" }, "no objects yet: add one below"));
  S.objects.forEach((o, i) => {
    const fs = framesOf(o);
    const pts = fs.reduce((n, f) => n + o.kf[f].points.length, 0);
    const li = el("li", { class: i === S.current ? "active" : "", "data-object": o.name, onclick: () => { S.current = i; renderAll(); schedulePreview(); } },
      el("span", { class: "swatch", style: `background:${rgbCss(o.rgb)}` }),
      el("span", { class: "grow" }, o.name),
      el("span", { class: "count" }, `${fs.length} kf · ${pts} pts`),
    );
    if (i < 9) li.append(el("span", { class: "key" }, String(i + 1)));
    ul.append(li);
  });
}
function renderFrame() {
  const o = cur();
  $("frame-label").textContent = S.video ? String(S.frame) : "";
  $("frame-object").textContent = o ? o.name : "—";
  const ul = $("frame-prompts");
  ul.replaceChildren();
  const k = o && o.kf[S.frame];
  if (!k || isEmptyKf(k)) ul.append(el("li", { class: "empty" }, o ? "no clicks: click the frame" : "add an object to start"));
  if (k) {
    k.points.forEach((p, i) => {
      const pos = k.labels[i] === 1;
      ul.append(el("li", { "data-kind": "point" },
        el("span", { class: "mark " + (pos ? "pos" : "neg") }, pos ? "+" : "−"),
        el("span", { class: "grow num" }, `${pos ? "positive" : "negative"} (${p[0].toFixed(1)}, ${p[1].toFixed(1)})`),
        el("button", { class: "x", title: "delete this point", onclick: (e) => { e.stopPropagation(); deletePoint(i); } }, "×")));
    });
    k.boxes.forEach((b, i) => {
      ul.append(el("li", { "data-kind": "box" },
        el("span", { class: "mark box" }, "▭"),
        el("span", { class: "grow num" }, `box (${b.map((v) => v.toFixed(0)).join(", ")})`),
        el("button", { class: "x", title: "delete this box", onclick: (e) => { e.stopPropagation(); deleteBox(i); } }, "×")));
    });
    if (k.mask) ul.append(el("li", {}, el("span", { class: "mark" }, "◼"), el("span", { class: "grow muted" }, `mask ${k.mask} (kept from the file)`)));
  }
  const others = S.objects.filter((x) => x !== o && !isEmptyKf(x.kf[S.frame]));
  $("frame-others").textContent = others.length ? "also on this frame: " + others.map((x) => x.name).join(", ") : "";
}
function renderKeyframes() {
  const o = cur();
  $("kf-object").textContent = o ? o.name : "—";
  const ul = $("keyframe-list");
  ul.replaceChildren();
  if (!o) return;
  const fs = framesOf(o);
  if (!fs.length) ul.append(el("li", { class: "empty" }, "none yet"));
  for (const f of fs) {
    const c = counts(o.kf[f]);
    const li = el("li", { class: f === S.frame ? "active" : "", "data-frame": String(f), onclick: () => setFrame(f) },
      el("span", { class: "grow num" }, `frame ${f}`));
    if (c.pos) li.append(el("span", { class: "badge pos", title: "positive points" }, `${c.pos}+`));
    if (c.neg) li.append(el("span", { class: "badge neg", title: "negative points" }, `${c.neg}−`));
    if (c.box) li.append(el("span", { class: "badge box", title: "boxes" }, `${c.box}▭`));
    if (c.mask) li.append(el("span", { class: "badge mask" }, "mask"));
    ul.append(li);
  }
}
function renderMessages() {
  const warn = [...S.serverWarnings, ...sideWarnings().map((w) => w.text)];
  $("warnings").replaceChildren(...warn.map((t) => el("li", {}, t)));
  $("errors").replaceChildren(...S.errors.map((t) => el("li", {}, t)));
}
function renderTimeline() {
  if (!S.video) return;
  const n = S.video.num_frames;
  $("scrubber").value = String(S.frame);
  $("frame-counter").textContent = `${S.frame} / ${n - 1}`;
  const ticks = $("ticks");
  ticks.replaceChildren();
  S.objects.forEach((o, i) => {
    for (const f of framesOf(o)) {
      const left = n > 1 ? (100 * f) / (n - 1) : 0;
      ticks.append(el("i", { style: `left:${left}%;top:${i === S.current ? 0 : 22}px;background:${rgbCss(o.rgb)}` }));
    }
  });
}
function renderAll() {
  renderObjects();
  renderFrame();
  renderKeyframes();
  renderMessages();
  renderTimeline();
  if (S.errors.length && !S.dirty) setSaveState("problems", "bad");
  else setSaveState(S.dirty ? "unsaved changes" : "saved", S.dirty ? "dirty" : "saved");
  $("undo-btn").disabled = !S.history.length;
  draw();
}
let noteTimer = 0;
function note(text, isError = false) {
  const n = $("preview-status");
  n.textContent = text;
  n.classList.toggle("error", isError);
  n.classList.remove("hidden");
  clearTimeout(noteTimer);
  noteTimer = setTimeout(() => {
    if (S.preview.on) showPreviewNote(S.preview.note, S.preview.error);
    else n.classList.add("hidden");
  }, 2500);
}

// ---------- mouse ----------
let drag = null;      // {mode: "pending"|"box"|"pan", sx, sy, x, y, ...}
let spaceHeld = false;
const local = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
function boxFromDrag() {
  const [x1, y1] = toImage(drag.cx, drag.cy);
  const cl = (v, hi) => Math.max(-0.5, Math.min(hi - 0.5, v));
  const W = S.video.width, H = S.video.height;
  const a = cl(Math.min(drag.x, x1), W), c = cl(Math.max(drag.x, x1), W);
  const b = cl(Math.min(drag.y, y1), H), d = cl(Math.max(drag.y, y1), H);
  return [a, b, c, d];
}
canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("pointerdown", (e) => {
  if (!S.video) return;
  const [sx, sy] = local(e);
  canvas.setPointerCapture(e.pointerId);
  if (e.button === 1 || (e.button === 0 && spaceHeld)) {
    drag = { mode: "pan", sx, sy, ox: S.view.ox, oy: S.view.oy };
    canvas.classList.add("panning");
    e.preventDefault();
    return;
  }
  const [x, y] = toImage(sx, sy);
  drag = { mode: "pending", button: e.button, sx, sy, cx: sx, cy: sy, x, y, shift: e.shiftKey, alt: e.altKey };
});
canvas.addEventListener("pointermove", (e) => {
  if (!S.video) return;
  const [sx, sy] = local(e);
  const [x, y] = toImage(sx, sy);
  $("cursor-pos").textContent = inImage(x, y) ? `x ${x.toFixed(1)}  y ${y.toFixed(1)}` : "";
  if (!drag) return;
  if (drag.mode === "pan") {
    S.view.ox = drag.ox + sx - drag.sx;
    S.view.oy = drag.oy + sy - drag.sy;
    return draw();
  }
  drag.cx = sx; drag.cy = sy;
  if (drag.mode === "pending" && drag.button === 0 && !drag.alt && Math.hypot(sx - drag.sx, sy - drag.sy) > DRAG_PX) drag.mode = "box";
  if (drag.mode === "box") draw();
});
canvas.addEventListener("pointerup", (e) => {
  if (!drag) return;
  const d = drag;
  canvas.classList.toggle("panning", spaceHeld);
  if (d.mode === "pan") { drag = null; return; }
  if (d.mode === "box") {
    const [a, b, c, dd] = boxFromDrag();
    drag = null;
    if (c - a >= 1 && dd - b >= 1) addBox(a, b, c, dd);
    else draw();
    return;
  }
  drag = null;
  if (!inImage(d.x, d.y)) return note("outside the image");
  if (d.alt) return deleteNearest(d.sx, d.sy);
  if (d.button === 2 || (d.button === 0 && d.shift)) addPoint(d.x, d.y, 0);
  else if (d.button === 0) addPoint(d.x, d.y, 1);
});
canvas.addEventListener("pointercancel", () => { drag = null; draw(); });
function deleteNearest(sx, sy) {
  const k = cur() && kfOf(cur(), S.frame);
  if (!k) return;
  let best = -1, bestD = 12;
  k.points.forEach((p, i) => {
    const [px, py] = toScreen(p[0], p[1]);
    const dd = Math.hypot(px - sx, py - sy);
    if (dd < bestD) { bestD = dd; best = i; }
  });
  if (best >= 0) return deletePoint(best);
  const [x, y] = toImage(sx, sy);
  const bi = k.boxes.findIndex((b) => x >= b[0] && x <= b[2] && y >= b[1] && y <= b[3]);
  if (bi >= 0) deleteBox(bi);
}
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  const [sx, sy] = local(e);
  const dy = e.deltaMode === 1 ? e.deltaY * 30 : e.deltaY;
  zoomAt(sx, sy, Math.exp(-dy * 0.0015));
}, { passive: false });

// ---------- keyboard ----------
document.addEventListener("keydown", (e) => {
  const typing = e.target instanceof HTMLInputElement && e.target.type !== "range" && e.target.type !== "checkbox";
  const mod = e.ctrlKey || e.metaKey;
  if (mod && e.key.toLowerCase() === "s") { e.preventDefault(); save(); return; }
  if (typing) return;
  if (mod && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); return; }
  if (mod) return;
  switch (e.key) {
    case "ArrowLeft": e.preventDefault(); setFrame(S.frame - (e.shiftKey ? 10 : 1)); break;
    case "ArrowRight": e.preventDefault(); setFrame(S.frame + (e.shiftKey ? 10 : 1)); break;
    case "Home": setFrame(0); break;
    case "End": setFrame(S.video.num_frames - 1); break;
    case "[": jumpKeyframe(-1); break;
    case "]": jumpKeyframe(1); break;
    case "f": case "F": fit(); break;
    case "p": case "P": setPreview(!S.preview.on); break;
    case " ": e.preventDefault(); spaceHeld = true; canvas.classList.add("panning"); break;
    default:
      if (/^[1-9]$/.test(e.key) && Number(e.key) <= S.objects.length) {
        S.current = Number(e.key) - 1; renderAll(); schedulePreview();
      }
  }
});
document.addEventListener("keyup", (e) => {
  if (e.key === " ") { spaceHeld = false; if (!drag || drag.mode !== "pan") canvas.classList.remove("panning"); }
});

// ---------- buttons ----------
$("scrubber").addEventListener("input", (e) => setFrame(Number(e.target.value)));
$("prev-btn").onclick = () => setFrame(S.frame - 1);
$("next-btn").onclick = () => setFrame(S.frame + 1);
$("fit-btn").onclick = fit;
$("undo-btn").onclick = undo;
$("save-btn").onclick = () => save();
$("reload-btn").onclick = () => {
  if (S.dirty && !window.confirm("Drop your unsaved changes and load the file from disk?")) return;
  loadPrompts();
};
$("clear-frame").onclick = () => clearFrame(false);
$("clear-frame-all").onclick = () => clearFrame(true);
$("preview-toggle").addEventListener("change", (e) => setPreview(e.target.checked));
$("add-object").addEventListener("submit", (e) => {
  e.preventDefault();
  if (addObject($("new-object").value)) {
    $("new-object").value = "";
    $("new-object").blur();
  }
});
$("conflict-reload").onclick = () => { $("conflict").classList.add("hidden"); loadPrompts(); };
$("conflict-overwrite").onclick = () => { $("conflict").classList.add("hidden"); save(true); };
$("conflict-cancel").onclick = () => $("conflict").classList.add("hidden");
window.addEventListener("beforeunload", (e) => { if (S.dirty) { e.preventDefault(); e.returnValue = ""; } });
window.addEventListener("resize", resizeCanvas);

// ---------- start ----------
(async function start() {
  try {
    await loadVideo();
    resizeCanvas();
    fit();
    await loadPrompts();
    const first = S.objects.length ? framesOf(cur())[0] : undefined;
    setFrame(first ?? 0);
    document.body.dataset.ready = "1";
  } catch (e) {
    S.errors = [`cannot start: ${e}`];
    renderMessages();
  }
})();

// for tests and the curious: the page state and its actions
window.masktrack = { state: S, exportPrompts, save, undo, setFrame, addObject, loadPrompts, setPreview, toImage, toScreen, zoomAt, fit };
