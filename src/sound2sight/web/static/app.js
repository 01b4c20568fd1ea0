// sound2sight page: upload a file, or record the microphone with MediaRecorder (the browser
// decodes and resamples the take to a 16 kHz WAV), POST it to /api/paint, then show the
// emotion, the paintings with the artworks nearest each, the artworks nearest the voice,
// and where the model's training data came from.
"use strict";

const TARGET_RATE = 16000; // Hz of the WAV sent to the server (the model's rate)
const SHOWN_PX = 256; // paintings are shown at least this large, smoothly upscaled
const $ = (id) => document.getElementById(id);
let limits = { max_upload_bytes: 10e6, max_seconds: 60 };
let recorder = null; // {media, stream, chunks, started, timer}
let takeUrl = null; // object URL of the last recording (revoked when replaced)
let voice = null; // this browser session: {session, calibration: {available, mode, ...}}

function showStatus(text) {
  $("status-text").textContent = text;
  $("status").hidden = !text;
}

function showError(text) {
  $("error").textContent = text || "";
  $("error").hidden = !text;
}

function setBusy(busy) {
  $("file").disabled = busy;
  $("record").disabled = busy;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// ---- recorded audio -> 16 kHz mono WAV (the browser's own decoder and resampler)
async function toWav(blob) {
  const ctx = new AudioContext();
  let decoded;
  try {
    decoded = await ctx.decodeAudioData(await blob.arrayBuffer());
  } finally {
    ctx.close();
  }
  const frames = Math.max(1, Math.ceil(decoded.duration * TARGET_RATE));
  const offline = new OfflineAudioContext(1, frames, TARGET_RATE); // mono: channels are mixed down
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const rendered = await offline.startRendering();
  return encodeWav(rendered.getChannelData(0), TARGET_RATE);
}

function encodeWav(samples, rate) {
  const buf = new ArrayBuffer(44 + samples.length * 2);
  const v = new DataView(buf);
  const str = (off, s) => { for (let i = 0; i < s.length; i++) v.setUint8(off + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); str(8, "WAVE");
  str(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true);
  v.setUint16(34, 16, true); str(36, "data"); v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    v.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buf], { type: "audio/wav" });
}

// ---- microphone
function showTake(blob) {
  if (takeUrl) URL.revokeObjectURL(takeUrl);
  takeUrl = URL.createObjectURL(blob);
  $("playback").src = takeUrl;
  $("take").hidden = false;
}

function recorderType() {
  const types = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];
  return types.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t)) || "";
}

async function startRecording() {
  showError("");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
    showError("This browser cannot record here (the microphone needs https or localhost).");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
  } catch (err) {
    showError("Microphone unavailable: " + (err && err.message ? err.message : err));
    return;
  }
  const type = recorderType();
  const media = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const chunks = [];
  media.ondataavailable = (e) => { if (e.data && e.data.size) chunks.push(e.data); };
  const started = performance.now();
  const timer = setInterval(() => {
    const s = (performance.now() - started) / 1000;
    $("rec-time").textContent = `recording ${s.toFixed(1)} s`;
    if (s >= limits.max_seconds - 0.5) stopRecording();
  }, 100);
  recorder = { media, stream, chunks, timer };
  media.start(250); // a chunk every 250 ms
  $("record").textContent = "■ Stop";
  $("record").classList.add("recording");
  $("file").disabled = true;
}

async function stopRecording() {
  if (!recorder) return;
  const r = recorder;
  recorder = null;
  clearInterval(r.timer);
  const stopped = new Promise((resolve) => { r.media.onstop = resolve; });
  r.media.stop();
  await stopped;
  r.stream.getTracks().forEach((t) => t.stop());
  $("record").textContent = "● Record";
  $("record").classList.remove("recording");
  $("rec-time").textContent = "";
  const blob = new Blob(r.chunks, { type: r.media.mimeType || "audio/webm" });
  if (blob.size === 0) {
    showError("Nothing was recorded: check the microphone.");
    $("file").disabled = false;
    return;
  }
  let wav;
  try {
    wav = await toWav(blob);
  } catch (err) {
    showError("Could not decode the recording in this browser: " + (err && err.message ? err.message : err));
    $("file").disabled = false;
    return;
  }
  showTake(wav); // the WAV that is sent: what the server hears, with a known duration
  await paint(wav, "recording");
}

// ---- server round trip
async function paint(blob, what) {
  showError("");
  if (blob.size > limits.max_upload_bytes) {
    showError(`The ${what} is too large: ${(blob.size / 1e6).toFixed(1)} MB, ` +
              `the limit is ${(limits.max_upload_bytes / 1e6).toFixed(1)} MB.`);
    return;
  }
  const q = new URLSearchParams({ n: $("n").value || 4, k: $("k").value || 8, seed: $("seed").value || 0 });
  if (voice && voice.calibration.available) {
    q.set("session", voice.session);
    if (voice.calibration.mode === "opt-in" && $("calibrate").checked) q.set("calibrate", "true");
  }
  setBusy(true);
  showStatus(`Listening to the ${what} and painting…`);
  try {
    const resp = await fetch("/api/paint?" + q, {
      method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" },
    });
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const msg = body && body.error ? body.error : resp.statusText;
      showError(`Could not paint this ${what} (HTTP ${resp.status}): ${msg}`);
      $("result").hidden = true;
      return;
    }
    render(body);
    if (body.calibration && voice) {
      voice.calibration = body.calibration;
      renderVoice();
    }
  } catch (err) {
    showError("Could not reach the server: " + (err && err.message ? err.message : err));
  } finally {
    showStatus("");
    setBusy(false);
  }
}

// ---- rendering
function credit(nb) {
  // "Title — Artist" when the file name carries them, the file name otherwise
  const title = el("span", { className: "title", textContent: nb.title || nb.name });
  const artist = nb.artist ? el("span", { className: "artist", textContent: nb.artist }) : null;
  const match = el("span", { className: `match ${nb.label}`, textContent: `${nb.label} · ${nb.score.toFixed(2)}` });
  return [title, artist, match];
}

function artworkCard(nb, small) {
  const alt = nb.artist ? `${nb.title} by ${nb.artist}` : `artwork ${nb.title || nb.name}`;
  const img = el("img", { src: nb.thumbnail, alt, title: nb.name });
  return el("figure", { className: small ? "artwork small" : "artwork" }, img,
    el("figcaption", {}, ...credit(nb)));
}

function paintingFigure(src, i, size, emotion, nearest) {
  const [w, h] = size || [0, 0];
  const img = el("img", { src, className: "painting", alt: `generated painting ${i + 1} (${emotion})` });
  img.style.width = `${Math.max(SHOWN_PX, w)}px`;
  const res = (a, b) => `${a}×${b} px` + (a < SHOWN_PX ? ", upscaled" : "");
  const cap = el("figcaption", {},
    el("span", { textContent: `painted #${i + 1}` }),
    el("span", { className: "res", textContent: w ? res(w, h) : "" }));
  img.addEventListener("load", () => {
    if (!w) cap.lastChild.textContent = res(img.naturalWidth, img.naturalHeight);
  });
  const fig = el("figure", { className: "painting-card" }, img, cap);
  if (nearest && nearest.length) {
    fig.append(el("div", { className: "strip" },
      el("p", { className: "muted strip-title", textContent: "Nearest to this painting" }),
      el("div", { className: "strip-items" }, ...nearest.map((nb) => artworkCard(nb, true)))));
  }
  return fig;
}

function renderBars(probabilities) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const [label, p] of Object.entries(probabilities)) {
    const fill = el("div", { className: label });
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    const pct = el("span", { textContent: `${(100 * p).toFixed(0)}%` });
    pct.dataset.label = label;
    bars.append(el("span", { textContent: label }), el("div", { className: "bar" }, fill), pct);
  }
}

function renderProvenance(prov) {
  const dl = $("provenance");
  dl.replaceChildren();
  const entries = Object.entries(prov || {});
  if (!entries.length) {
    dl.append(el("dd", { textContent: "This model did not record what it was trained on." }));
    return;
  }
  for (const [part, text] of entries) dl.append(el("dt", { textContent: part }), el("dd", { textContent: text }));
}

function render(r) {
  $("emotion").textContent = r.emotion;
  $("emotion").className = r.emotion;
  const unc = $("uncertain");
  unc.hidden = !r.uncertain;
  unc.textContent = r.uncertain ? `uncertain between ${r.uncertain[0]} and ${r.uncertain[1]}` : "";
  renderBars(r.probabilities);
  const t = r.timings_ms || {};
  $("meta").textContent = `${r.seconds !== undefined ? r.seconds.toFixed(1) + " s of audio, " : ""}` +
    `${r.n_windows} window${r.n_windows === 1 ? "" : "s"}` +
    (t.total !== undefined ? `, answered in ${t.total.toFixed(0)} ms on the server` : "");
  const perImage = r.image_neighbours || [];
  $("paintings").replaceChildren(...r.images.map((src, i) =>
    paintingFigure(src, i, (r.image_sizes || [])[i], r.emotion, perImage[i])));
  $("neighbours").replaceChildren(...r.neighbours.map((nb) => artworkCard(nb, false)));
  renderProvenance(r.provenance);
  const art = (r.provenance || {}).art;
  $("art-source").textContent = art ? ` Collection: ${art}.` : "";
  $("result").hidden = false;
}

// ---- this browser session's voice (speaker calibration)
function renderVoice() {
  const c = voice ? voice.calibration : null;
  $("voice").hidden = !(c && c.available && c.mode !== "off");
  if ($("voice").hidden) return;
  $("calibrate-label").hidden = c.mode !== "opt-in";
  $("calibrate-hint").textContent = `(from the ${ordinal(c.calibrate_from)} recording on)`;
  const n = c.recordings;
  let text;
  if (c.calibrated_on > 0) {
    text = `Calibrated to your voice (${c.calibrated_on} recording${c.calibrated_on === 1 ? "" : "s"}).`;
  } else if (n === 0) {
    text = "No recording of your voice is kept.";
  } else {
    text = `${n} recording${n === 1 ? "" : "s"} of your voice kept; not calibrated` +
      (c.mode === "opt-in" && !$("calibrate").checked ? " (tick “calibrate to my voice”)." :
        n + 1 < c.calibrate_from ? ` until the ${ordinal(c.calibrate_from)}.` : ".");
  }
  $("voice-state").textContent = text;
  $("voice-state").classList.toggle("calibrated", c.calibrated_on > 0);
}

function ordinal(n) {
  return n === 1 ? "first" : n === 2 ? "second" : n === 3 ? "third" : `${n}th`;
}

async function newSession() {
  try {
    const resp = await fetch("/api/session", { method: "POST" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    voice = await resp.json();
    $("forget-minutes").textContent = Math.round(voice.forget_after_minutes);
  } catch (e) {
    voice = null; // the page still works, uncalibrated
  }
  renderVoice();
}

async function forgetVoice() {
  if (!voice) return;
  const old = voice.session;
  try {
    await fetch(`/api/session/${encodeURIComponent(old)}`, { method: "DELETE" });
  } catch (e) { /* a new session forgets it anyway: the old id is never sent again */ }
  await newSession();
  if (voice) $("voice-state").textContent = "Your voice was forgotten: no recording of it is kept.";
}

// ---- wiring
window.addEventListener("DOMContentLoaded", async () => {
  $("file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    e.target.value = ""; // choosing the same file again fires change again
    if (!file) return;
    showTake(file);
    await paint(file, `file “${file.name}”`);
  });
  $("record").addEventListener("click", () => (recorder ? stopRecording() : startRecording()));
  $("forget").addEventListener("click", forgetVoice);
  $("calibrate").addEventListener("change", renderVoice);
  newSession();
  try {
    const h = await (await fetch("/health")).json();
    limits = h;
    $("limits").textContent = `Up to ${(h.max_upload_bytes / 1e6).toFixed(0)} MB and ` +
      `${h.max_seconds.toFixed(0)} s per recording.`;
  } catch (e) { /* keep the defaults */ }
});
