// The handheld scanner page: one step at a time, scan field always focused, pass/stop with
// sound, offline queue. The server judges every scan; this page never decides on its own.
import * as outbox from "./outbox.js";

const config = JSON.parse(document.getElementById("scan-config").textContent);
const $ = (id) => document.getElementById(id);
const DEVICE_KEY = "coi-scanner-device";
const STEP_KEY = "coi-scanner-step";
const TIMEOUT_MS = 8000;

const state = {
  device: config.device,
  step: null,
  title: "",
  run: null,
  manual: false,
  next: null,
  csrf: JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"],
  online: navigator.onLine,
  flushing: false,
  deadline: null,
  camera: null,
};

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

function newKey() {
  if (crypto.randomUUID) {
    return crypto.randomUUID();
  }
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function show(element, visible) {
  element.hidden = !visible;
}

let audio = null;
function tone(steps) {
  try {
    audio = audio || new AudioContext();
    audio.resume();
    let at = audio.currentTime;
    for (const [frequency, seconds, wave] of steps) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = wave || "sine";
      osc.frequency.value = frequency;
      gain.gain.value = 0.25;
      osc.connect(gain).connect(audio.destination);
      osc.start(at);
      osc.stop(at + seconds);
      at += seconds + 0.04;
    }
  } catch (error) {
    // No audio on this device: the colours still tell pass from stop.
  }
}
const SOUNDS = {
  pass: [[880, 0.09], [1320, 0.12]],
  done: [[880, 0.09], [1100, 0.09], [1320, 0.16]],
  stop: [[220, 0.35, "square"], [180, 0.45, "square"]],
  alarm: [[300, 0.25, "square"], [200, 0.25, "square"], [300, 0.25, "square"], [200, 0.4, "square"]],
  queued: [[660, 0.15, "triangle"]],
};

async function post(url, body, extraHeaders = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    return await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": state.csrf, ...extraHeaders },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
  } finally {
    clearTimeout(timer);
  }
}

async function refreshSession() {
  // A page opened from the offline cache carries an old CSRF token: fetch the current one.
  try {
    const res = await fetch("/scan/session", { credentials: "same-origin" });
    const body = await res.json();
    if (res.ok && body.user_id === config.userId) {
      state.csrf = body.csrf;
      return true;
    }
  } catch (error) {
    // still offline
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// Rendering answers
// ---------------------------------------------------------------------------------------

const input = $("scan-input");

function focusField() {
  if (!input || $("work").hidden) {
    return;
  }
  const busy = !$("question").hidden || !$("signature").hidden;
  if (!busy) {
    input.focus({ preventScroll: true });
  }
}

let verdicts = 0;
function verdict(kind, title, message, suggestion) {
  const box = $("result");
  box.dataset.kind = kind;
  box.dataset.seq = String(++verdicts); // lets a watcher tell a new verdict from the last one
  $("verdict").textContent = title;
  $("message").textContent = message || "";
  const hint = $("suggestion");
  hint.textContent = suggestion || "";
  show(hint, Boolean(suggestion));
  show(box, true);
}

function renderNext(next, body) {
  state.next = next;
  show($("question"), false);
  show($("signature"), false);
  show($("progress"), false);
  if (body && body.waiting_for_second_person) {
    $("prompt").textContent = "Verified. A second person must now scan and sign (on any scanner).";
    return;
  }
  if (!next) {
    return;
  }
  $("prompt").textContent = next.prompt;
  if (next.type === "scan" && next.each) {
    $("progress").textContent = `${next.done} of ${next.of} scanned`;
    show($("progress"), true);
  } else if (next.type === "question") {
    $("qtext").textContent = next.prompt;
    const text = next.answer_type === "text";
    show($("yesno"), !text);
    show($("text-answer"), text);
    show($("question"), true);
    if (text) {
      $("answer-text").value = "";
      $("answer-text").focus();
    }
  } else if (next.type === "signature") {
    $("sign-meaning").textContent = next.prompt;
    $("sign-password").value = "";
    show($("signature"), true);
    $("sign-password").focus();
  }
}

function renderFollowing(following) {
  const box = $("following");
  box.replaceChildren();
  const here = new Set(config.steps.map((s) => s.code));
  for (const step of following || []) {
    if (!here.has(step.code)) {
      continue;
    }
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice";
    button.dataset.step = step.code;
    button.textContent = `Next: ${step.title}`;
    box.append(button);
  }
  show(box, box.children.length > 0);
}

function renderCountdown() {
  const line = $("countdown");
  if (!state.deadline) {
    show(line, false);
    return;
  }
  const left = Math.round((state.deadline - Date.now()) / 1000);
  const at = new Date(state.deadline).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (left <= 0) {
    line.textContent = `Thaw-to-infusion limit passed at ${at}. Do not infuse.`;
    line.dataset.state = "expired";
  } else {
    const minutes = Math.floor(left / 60);
    const seconds = String(left % 60).padStart(2, "0");
    line.textContent = `Infuse before ${at}: ${minutes}:${seconds} left since thaw`;
    line.dataset.state = left < 600 ? "short" : "ok";
  }
  show(line, true);
}

function render(body) {
  if (body.countdown && body.countdown.deadline) {
    state.deadline = Date.parse(body.countdown.deadline);
    renderCountdown();
  }
  if (body.status === "error") {
    const wrongPatient = body.reason === "coi_mismatch";
    const keyboard = ["caps_lock", "keyboard_layout"].includes(body.reason);
    const hint = keyboard && body.suggestion
      ? `Likely reading: ${body.suggestion}. Not accepted: fix the scanner or keyboard ` +
        "(Caps Lock off, same keyboard layout) and scan again."
      : null;
    verdict(wrongPatient ? "wrong-patient" : "stop", wrongPatient ? "STOP — WRONG PATIENT" : "STOP",
      body.message, hint);
    tone(wrongPatient ? SOUNDS.alarm : SOUNDS.stop);
    $("result").dataset.reason = body.reason || "";
    return;
  }
  $("result").dataset.reason = "";
  if (body.complete) {
    verdict("done", "✓ STEP COMPLETE", body.message);
    tone(SOUNDS.done);
    $("prompt").textContent = "Done. Choose the next step, or scan the next order for this step.";
    show($("question"), false);
    show($("signature"), false);
    show($("progress"), false);
    state.run = newKey();
    saveStep();
    renderFollowing(body.following);
    refreshWorklist();
    return;
  }
  verdict("pass", "✓ ACCEPTED", body.message);
  tone(SOUNDS.pass);
  renderNext(body.next, body);
}

function showQueued() {
  verdict("queued", "SAVED OFFLINE", "No connection: this scan is kept on this scanner with its " +
    "time and will be checked when the connection returns. Keep to the paper procedure meanwhile.");
  tone(SOUNDS.queued);
}

// ---------------------------------------------------------------------------------------
// Online / offline and the outbox
// ---------------------------------------------------------------------------------------

function setOnline(online) {
  state.online = online;
  const net = $("net");
  net.dataset.state = online ? "online" : "offline";
  net.textContent = online ? "Online" : "Offline — scans are queued";
}

async function updateCount() {
  const waiting = await outbox.count(config.userId);
  const badge = $("queue");
  badge.dataset.count = String(waiting);
  badge.textContent = `${waiting} scan${waiting === 1 ? "" : "s"} waiting to upload`;
  show(badge, waiting > 0);
}

async function queue(entry) {
  await outbox.add({ user: config.userId, ...entry });
  setOnline(false);
  await updateCount();
}

async function sendQueued(entry) {
  if (entry.kind === "scan") {
    return post("/api/v1/scans", entry.body);
  }
  return post(entry.url, entry.body, { "Idempotency-Key": entry.key });
}

async function flush() {
  if (state.flushing) {
    return;
  }
  state.flushing = true;
  let refused = 0;
  let sent = 0;
  try {
    for (const entry of await outbox.list()) {
      if (entry.user !== config.userId) {
        continue;
      }
      let res;
      try {
        res = await sendQueued(entry);
      } catch (error) {
        setOnline(false);
        return;
      }
      if (res.status === 401) {
        verdict("stop", "LOG IN AGAIN", "Your session ended. Log in to upload the waiting scans.");
        return;
      }
      if (res.status === 403) {
        await refreshSession();
        return;
      }
      // An answer below 500 is final: retrying a refused scan cannot change its verdict.
      if (res.status >= 500) {
        return;
      }
      setOnline(true);
      sent += 1;
      if (entry.kind === "scan" && res.status !== 201) {
        refused += 1;
      }
      await outbox.remove(entry.id);
    }
  } finally {
    state.flushing = false;
    await updateCount();
  }
  if (sent > 0) {
    const note = refused
      ? `${refused} of them would have been refused: they are recorded and a deviation is open for QA.`
      : "All of them were accepted.";
    verdict(refused ? "stop" : "pass", "OFFLINE SCANS UPLOADED", `${sent} uploaded. ${note}`);
    refreshWorklist();
  }
}

window.addEventListener("online", () => {
  setOnline(true);
  if (state.device) {
    flush();
  }
});
window.addEventListener("offline", () => setOnline(false));

// ---------------------------------------------------------------------------------------
// Scanning
// ---------------------------------------------------------------------------------------

async function submitScan(raw) {
  if (!raw || !raw.trim() || !state.step) {
    return;
  }
  const body = {
    raw,
    device: state.device,
    step: state.step,
    client_at: new Date().toISOString(),
    nonce: newKey(),
    run: state.run,
    offline: false,
    manual: state.manual,
  };
  let res;
  try {
    res = await post("/api/v1/scans", body);
  } catch (error) {
    await queue({ kind: "scan", body: { ...body, offline: true } });
    showQueued();
    return;
  }
  if (res.status >= 500) {
    await queue({ kind: "scan", body: { ...body, offline: true } });
    showQueued();
    return;
  }
  setOnline(true);
  const answer = await res.json();
  if (res.status === 401) {
    verdict("stop", "LOG IN AGAIN", "Your session ended: this scan was not recorded. Log in and scan again.");
    tone(SOUNDS.stop);
    return;
  }
  if (answer.reason === "csrf_failed" && (await refreshSession())) {
    return submitScan(raw);
  }
  render(answer);
  flush();
}

async function sendAnswer(value) {
  const key = state.next && state.next.key;
  if (!key) {
    return;
  }
  const url = `/api/v1/runs/${encodeURIComponent(state.run)}/answers`;
  const body = { answers: { [key]: value } };
  const idempotencyKey = newKey();
  let res;
  try {
    res = await post(url, body, { "Idempotency-Key": idempotencyKey });
  } catch (error) {
    await queue({ kind: "call", url, body, key: idempotencyKey });
    showQueued();
    show($("question"), false);
    focusField();
    return;
  }
  render(await res.json());
  focusField();
}

async function sign(event) {
  event.preventDefault();
  const url = `/api/v1/runs/${encodeURIComponent(state.run)}/signatures`;
  const body = { password: $("sign-password").value, meaning: state.next.meaning };
  $("sign-password").value = "";
  let res;
  try {
    res = await post(url, body, { "Idempotency-Key": newKey() });
  } catch (error) {
    verdict("stop", "NO CONNECTION", "Signing needs a connection. Try again when online.");
    return;
  }
  render(await res.json());
  focusField();
}

function insertAtCursor(text) {
  const start = input.selectionStart ?? input.value.length;
  const end = input.selectionEnd ?? input.value.length;
  input.value = input.value.slice(0, start) + text + input.value.slice(end);
  input.selectionStart = input.selectionEnd = start + text.length;
}

function wireScanField() {
  input.addEventListener("keydown", (event) => {
    show($("capslock"), Boolean(event.getModifierState && event.getModifierState("CapsLock")));
    // Wedge scanners end a scan with Enter or Tab; both submit and keep focus here.
    if (event.key === "Enter" || event.key === "Tab") {
      event.preventDefault();
      const raw = input.value;
      input.value = "";
      submitScan(raw);
      return;
    }
    // Scanners that send the GS1 group separator as Ctrl+] (ASCII 29).
    if (event.ctrlKey && (event.key === "]" || event.code === "BracketRight")) {
      event.preventDefault();
      insertAtCursor("\x1d");
    }
  });
  $("scan-form").addEventListener("submit", (event) => event.preventDefault());
  input.addEventListener("blur", () => setTimeout(() => {
    if (document.activeElement === document.body || document.activeElement === null) {
      focusField();
    }
  }, 0));
  document.addEventListener("click", (event) => {
    if (!event.target.closest("input, textarea, button, a, summary, video, select")) {
      focusField();
    }
  });
  window.addEventListener("focus", focusField);
}

// ---------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------

function saveStep() {
  sessionStorage.setItem(STEP_KEY, JSON.stringify({ device: state.device, step: state.step, run: state.run }));
}

function startStep(code, keepRun) {
  const step = config.steps.find((s) => s.code === code);
  if (!step) {
    return;
  }
  state.step = code;
  state.title = step.title;
  state.run = keepRun || newKey();
  state.next = null;
  state.deadline = null;
  saveStep();
  $("step-title").textContent = step.title;
  $("prompt").textContent = step.first;
  show($("result"), false);
  show($("question"), false);
  show($("signature"), false);
  show($("progress"), false);
  show($("following"), false);
  show($("countdown"), false);
  show($("steps"), false);
  show($("work"), true);
  focusField();
}

function chooseStep() {
  state.step = null;
  sessionStorage.removeItem(STEP_KEY);
  show($("work"), false);
  show($("steps"), true);
}

async function refreshWorklist() {
  const box = $("worklist");
  if (!box) {
    return;
  }
  try {
    const res = await fetch(box.dataset.url, { credentials: "same-origin" });
    if (res.ok) {
      box.innerHTML = await res.text();
    }
  } catch (error) {
    // offline: keep the list we have
  }
}

// ---------------------------------------------------------------------------------------
// Camera (BarcodeDetector, or our own copy of the polyfill and its wasm)
// ---------------------------------------------------------------------------------------

async function startCamera() {
  const panel = $("camera-panel");
  const note = $("camera-note");
  if (state.camera) {
    stopCamera();
    return;
  }
  show(panel, true);
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    note.textContent = "This browser gives no camera access here (it needs HTTPS or localhost).";
    return;
  }
  try {
    if (!("BarcodeDetector" in window)) {
      const polyfill = await import("/static/vendor/barcode-detector/es/polyfill.js");
      polyfill.prepareZXingModule({
        overrides: {
          locateFile: (path, prefix) =>
            path.endsWith(".wasm") ? `/static/vendor/zxing-wasm/${path}` : prefix + path,
        },
        fireImmediately: false,
      });
    }
    const detector = new BarcodeDetector({ formats: ["data_matrix", "code_128", "qr_code"] });
    const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    const video = $("video");
    video.srcObject = stream;
    await video.play();
    note.textContent = "Aim at one barcode.";
    let last = "";
    let lastAt = 0;
    const timer = setInterval(async () => {
      const found = await detector.detect(video).catch(() => []);
      if (found.length > 1) {
        note.textContent = "Several barcodes in view: aim at one.";
        return;
      }
      if (found.length === 1) {
        const raw = found[0].rawValue;
        if (raw !== last || Date.now() - lastAt > 3000) {
          last = raw;
          lastAt = Date.now();
          note.textContent = "Read.";
          submitScan(raw);
        }
      }
    }, 300);
    state.camera = { stream, timer };
    $("camera").textContent = "Stop camera";
  } catch (error) {
    note.textContent = `Camera unavailable: ${error.message || error}`;
  }
}

function stopCamera() {
  if (state.camera) {
    clearInterval(state.camera.timer);
    state.camera.stream.getTracks().forEach((track) => track.stop());
    state.camera = null;
  }
  show($("camera-panel"), false);
  $("camera").textContent = "Camera";
  focusField();
}

// ---------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------

function start() {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/scan/sw.js", { scope: "/scan/" }).catch(() => {});
  }
  setOnline(navigator.onLine);
  updateCount();
  if (!state.device) {
    // Come back to the scanner this station used last time.
    const remembered = localStorage.getItem(DEVICE_KEY);
    const choice = remembered && document.querySelector(`[data-device="${CSS.escape(remembered)}"]`);
    if (choice) {
      window.location.replace(choice.href);
    }
    return;
  }
  localStorage.setItem(DEVICE_KEY, state.device);
  // The countdown, the verdicts and the uploads live in the step panel, which only a chosen
  // scanner's page has: their timers start here, not on the page that lists the scanners.
  setInterval(renderCountdown, 1000);
  setInterval(flush, 5000);
  $("change-station").addEventListener("click", () => localStorage.removeItem(DEVICE_KEY));
  wireScanField();
  document.addEventListener("click", (event) => {
    const stepButton = event.target.closest("[data-step]:not(.code)");
    if (stepButton) {
      startStep(stepButton.dataset.step);
      return;
    }
    const code = event.target.closest("button.code");
    if (code) {
      // Demo aid: send a listed code as if it had been scanned.
      if (state.step !== code.dataset.step) {
        startStep(code.dataset.step);
      }
      submitScan(code.dataset.code);
    }
  });
  $("change-step").addEventListener("click", chooseStep);
  $("restart").addEventListener("click", () => startStep(state.step));
  $("manual").addEventListener("click", () => {
    state.manual = !state.manual;
    $("manual").setAttribute("aria-pressed", String(state.manual));
    input.setAttribute("inputmode", state.manual ? "text" : "none");
    $("prompt").dataset.manual = String(state.manual);
    focusField();
  });
  $("camera").addEventListener("click", startCamera);
  $("yesno").addEventListener("click", (event) => {
    const button = event.target.closest("[data-answer]");
    if (button) {
      sendAnswer(button.dataset.answer === "yes");
    }
  });
  $("text-answer").addEventListener("submit", (event) => {
    event.preventDefault();
    sendAnswer($("answer-text").value);
  });
  $("signature").addEventListener("submit", sign);
  const saved = JSON.parse(sessionStorage.getItem(STEP_KEY) || "null");
  if (saved && saved.device === state.device && saved.step) {
    startStep(saved.step, saved.run);
  }
  flush();
}

start();
