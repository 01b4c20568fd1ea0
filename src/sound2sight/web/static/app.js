// sound2sight page: upload a file or record the microphone (PCM -> 16-bit WAV), POST it to
// /api/paint, show the emotion bars, the paintings and the nearest real artworks.
"use strict";

const TARGET_RATE = 16000; // Hz of the WAV sent to the server (the model's rate)
const $ = (id) => document.getElementById(id);
let limits = { max_upload_bytes: 10e6, max_seconds: 60 };
let recorder = null; // {stream, ctx, node, chunks, rate, started, timer}

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

// ---- WAV encoding
function resample(samples, rate, target) {
  if (rate === target) return samples;
  const ratio = rate / target;
  const out = new Float32Array(Math.floor(samples.length / ratio));
  for (let i = 0; i < out.length; i++) {
    // average the input samples that fall in this output sample (a crude low-pass)
    const a = Math.floor(i * ratio), b = Math.min(samples.length, Math.floor((i + 1) * ratio));
    let sum = 0;
    for (let j = a; j < b; j++) sum += samples[j];
    out[i] = b > a ? sum / (b - a) : samples[a];
  }
  return out;
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
async function startRecording() {
  showError("");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
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
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(stream);
  const node = ctx.createScriptProcessor(4096, 1, 1);
  const mute = ctx.createGain();
  mute.gain.value = 0; // keep the graph running without playing the voice back
  const chunks = [];
  node.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
  source.connect(node); node.connect(mute); mute.connect(ctx.destination);
  const started = performance.now();
  const timer = setInterval(() => {
    const s = (performance.now() - started) / 1000;
    $("rec-time").textContent = `recording ${s.toFixed(1)} s`;
    if (s >= limits.max_seconds - 0.5) stopRecording();
  }, 100);
  recorder = { stream, ctx, node, chunks, rate: ctx.sampleRate, timer };
  $("record").textContent = "■ Stop";
  $("record").classList.add("recording");
  $("file").disabled = true;
}

async function stopRecording() {
  if (!recorder) return;
  const r = recorder;
  recorder = null;
  clearInterval(r.timer);
  r.node.onaudioprocess = null;
  r.stream.getTracks().forEach((t) => t.stop());
  await r.ctx.close();
  $("record").textContent = "● Record";
  $("record").classList.remove("recording");
  $("rec-time").textContent = "";
  const n = r.chunks.reduce((acc, c) => acc + c.length, 0);
  if (n === 0) {
    showError("Nothing was recorded: check the microphone.");
    $("file").disabled = false;
    return;
  }
  const all = new Float32Array(n);
  let off = 0;
  for (const c of r.chunks) { all.set(c, off); off += c.length; }
  await paint(encodeWav(resample(all, r.rate, TARGET_RATE), TARGET_RATE), "recording");
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
      return;
    }
    render(body);
  } catch (err) {
    showError("Could not reach the server: " + (err && err.message ? err.message : err));
  } finally {
    showStatus("");
    setBusy(false);
  }
}

function figure(src, caption, alt) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src; img.alt = alt;
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(img, cap);
  return fig;
}

function render(r) {
  $("emotion").textContent = r.emotion;
  $("emotion").className = r.emotion;
  const bars = $("bars");
  bars.replaceChildren();
  for (const [label, p] of Object.entries(r.probabilities)) {
    const name = document.createElement("span");
    name.textContent = label;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.className = label;
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    const pct = document.createElement("span");
    pct.textContent = `${(100 * p).toFixed(0)}%`;
    pct.dataset.label = label;
    bars.append(name, bar, pct);
  }
  const t = r.timings_ms || {};
  $("meta").textContent = `${r.seconds !== undefined ? r.seconds.toFixed(1) + " s of audio, " : ""}` +
    `${r.n_windows} window${r.n_windows === 1 ? "" : "s"}` +
    (t.total !== undefined ? `, ${t.total.toFixed(0)} ms on the server` : "");
  $("paintings").replaceChildren(...r.images.map((src, i) =>
    figure(src, `painted #${i + 1}`, `generated painting ${i + 1} (${r.emotion})`)));
  $("neighbours").replaceChildren(...r.neighbours.map((nb) =>
    figure(nb.thumbnail, `${nb.label} · ${nb.score.toFixed(2)} · ${nb.name}`, `real artwork ${nb.name}`)));
  $("result").hidden = false;
}

// ---- wiring
window.addEventListener("DOMContentLoaded", async () => {
  $("file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    e.target.value = ""; // choosing the same file again fires change again
    if (file) await paint(file, `file “${file.name}”`);
  });
  $("record").addEventListener("click", () => (recorder ? stopRecording() : startRecording()));
  try {
    const h = await (await fetch("/health")).json();
    limits = h;
    $("limits").textContent = `Up to ${(h.max_upload_bytes / 1e6).toFixed(0)} MB and ` +
      `${h.max_seconds.toFixed(0)} s per recording.`;
  } catch (e) { /* keep the defaults */ }
});
