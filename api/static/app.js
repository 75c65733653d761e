// The page's behaviour: upload, submit a job, follow it, show the result. Plain browser
// JavaScript, no build step; every call goes through the public API.
"use strict";

const STEPS = ["download", "tts", "voice_conversion", "lipsync", "encode", "upload"];
const WAIT_S = 2; // each poll holds at most this long, so progress stays fresh
const KEY_ITEM = "lipsync-api-key";

const $ = (id) => document.getElementById(id);
const keysOn = document.body.dataset.keys === "on";
const uploadStore = document.body.dataset.uploadStore;

class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

function headers(extra) {
  const h = Object.assign({}, extra);
  const key = keysOn ? $("api-key").value.trim() : "";
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function api(method, path, body, extraHeaders) {
  const init = { method, headers: headers(extraHeaders) };
  if (body !== undefined) init.body = body;
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!response.ok) {
    const err = data && data.error;
    if (err) throw new ApiError(err.code, err.message);
    throw new ApiError("http_" + response.status, `the service answered ${response.status} ${response.statusText}`);
  }
  return data;
}

function randomName() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes); // works on plain http too, unlike crypto.randomUUID
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function setStatus(text, fraction) {
  $("status").textContent = text;
  if (fraction !== undefined) $("progress").value = fraction;
}

function showError(err) {
  const box = $("error");
  box.textContent = err.code ? `${err.message} (${err.code})` : String(err.message || err);
  box.hidden = false;
}

async function userVideoUri() {
  const file = $("video-file").files[0];
  if (file) {
    setStatus(`Uploading ${file.name}…`, 0);
    const form = new FormData();
    form.append("file", file);
    const up = await api("POST", "/api/v1/uploads", form);
    return up.uri;
  }
  const uri = $("video-uri").value.trim();
  if (!uri) throw new ApiError("invalid_request", "choose a video file to upload or give its URI");
  return uri;
}

async function follow(jobId) {
  for (;;) {
    const job = await api("GET", `/api/v1/jobs/${encodeURIComponent(jobId)}?wait_s=${WAIT_S}`);
    const p = job.progress || { step: "", fraction: 0 };
    setStatus(`${job.status}: ${p.step} ${Math.round(p.fraction * 100)}%`, p.fraction);
    if (job.status === "succeeded") return job;
    if (job.status === "failed" || job.status === "canceled") {
      const err = job.error || { code: job.status, message: `the job was ${job.status}` };
      throw new ApiError(err.code, err.message);
    }
  }
}

function drawTimeline(stepTimes) {
  const ns = "http://www.w3.org/2000/svg";
  const rowH = 24, labelW = 130, barW = 360, valueW = 70;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${labelW + barW + valueW} ${rowH * (STEPS.length + 1)}`);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.appendChild(el);
    return el;
  };
  let start = 0;
  const total = STEPS.reduce((a, s) => a + (stepTimes[s] || 0), 0) || 1e-6;
  STEPS.forEach((step, i) => {
    const t = stepTimes[step] || 0;
    const y = i * rowH;
    add("text", { x: 0, y: y + 16 }, step);
    // a Gantt bar: where the step starts in the run, and how long it takes
    add("rect", { x: labelW + (start / total) * barW, y: y + 4, width: Math.max((t / total) * barW, 1),
                  height: rowH - 8, fill: "#1f6feb", "data-step": step });
    add("text", { x: labelW + barW + 6, y: y + 16 }, `${t.toFixed(2)} s`);
    start += t;
  });
  const y = STEPS.length * rowH;
  add("text", { x: 0, y: y + 16, "font-weight": "bold" }, "total");
  add("text", { x: labelW + barW + 6, y: y + 16, "font-weight": "bold" },
      `${(stepTimes.total !== undefined ? stepTimes.total : total).toFixed(2)} s`);
  $("timeline").replaceChildren(svg);
}

function showHits(hits) {
  const list = $("cache-hits");
  list.replaceChildren();
  for (const [name, hit] of Object.entries(hits || {})) {
    const li = document.createElement("li");
    li.textContent = `${name}: ${hit ? "hit" : "miss"}`;
    list.appendChild(li);
  }
}

async function showVideo(jobId) {
  const video = $("result-video");
  const path = `/api/v1/jobs/${encodeURIComponent(jobId)}/video`;
  if (keysOn) {
    // <video src> cannot send the Authorization header: fetch it, then play the blob
    const response = await fetch(path, { headers: headers() });
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      const err = (data && data.error) || { code: "http_" + response.status, message: "the video cannot be fetched" };
      throw new ApiError(err.code, err.message);
    }
    video.src = URL.createObjectURL(await response.blob());
  } else {
    video.src = path; // streamed with Range requests
  }
}

async function run(event) {
  event.preventDefault();
  const button = $("submit");
  button.disabled = true;
  $("error").hidden = true;
  $("result").hidden = true;
  try {
    const word = $("word").value.trim();
    if (!word) throw new ApiError("invalid_request", "type a word or sentence to say");
    const source = await userVideoUri();
    const body = { word, user_video_gs: source, tts_lang: $("lang").value, pipeline: $("pipeline").value,
                   output_video_gs: `${uploadStore}/out-${randomName()}.mp4` };
    if ($("engine").value) body.tts_engine = $("engine").value;
    setStatus("Submitting…", 0);
    const created = await api("POST", "/api/v1/jobs", JSON.stringify(body), { "Content-Type": "application/json" });
    document.body.dataset.jobId = created.job_id;
    const job = await follow(created.job_id);
    setStatus(`succeeded in ${job.result.step_times.total.toFixed(2)} s`, 1);
    drawTimeline(job.result.step_times);
    showHits(job.result.cache_hits);
    $("result").hidden = false;
    await showVideo(created.job_id);
  } catch (err) {
    setStatus("", 0);
    showError(err);
  } finally {
    button.disabled = false;
  }
}

function init() {
  if (keysOn) {
    $("key-fieldset").hidden = false;
    $("api-key").value = sessionStorage.getItem(KEY_ITEM) || "";
    $("api-key").addEventListener("input", () => sessionStorage.setItem(KEY_ITEM, $("api-key").value));
  }
  $("job-form").addEventListener("submit", run);
}

init();
