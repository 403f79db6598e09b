// Service worker for the scanner page: it keeps the page and its files so the scanner opens
// and goes on queueing scans without a connection. API calls are never cached or answered
// here: the page itself decides what to queue (see outbox.js).

// Files are served from this cache first, so its name must change whenever one of them does,
// or installed scanners keep running the old code. The server puts a digest of the exact bytes
// of every file in FILES into the name (tracker/web/scan_worker.py): keep FILES a plain list of
// "/static/..." strings, and leave the placeholder below as it is.
const CACHE = "coi-scanner-__FILES_DIGEST__";
const FILES = [
  "/static/app.css",
  "/static/scan/scan.css",
  "/static/scan/scan.js",
  "/static/scan/outbox.js",
  "/static/vendor/htmx.org/htmx.min.js",
  "/static/vendor/barcode-detector/es/polyfill.js",
  "/static/vendor/barcode-detector/es/zxing-exported.js",
  "/static/vendor/zxing-wasm/zxing_reader.wasm",
];

self.addEventListener("install", (event) => {
  // "reload" skips the browser's HTTP cache: our static files carry no max-age, so a heuristic
  // freshness could otherwise put the old bytes into the new cache.
  const fresh = FILES.map((url) => new Request(url, { cache: "reload" }));
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(fresh)));
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

async function pageFromNetwork(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    // Keep the last page the person actually saw (never a login redirect).
    if (response.ok && !response.redirected) {
      await cache.put(request, response.clone());
    }
    return response;
  } catch (error) {
    const cached = await cache.match(request) || await cache.match(request, { ignoreSearch: true });
    if (cached) {
      return cached;
    }
    throw error;
  }
}

async function fileFromCache(request) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(request);
  if (cached) {
    return cached;
  }
  const response = await fetch(request);
  if (response.ok) {
    await cache.put(request, response.clone());
  }
  return response;
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) {
    return;
  }
  if (event.request.mode === "navigate" && url.pathname.startsWith("/scan/")) {
    event.respondWith(pageFromNetwork(event.request));
  } else if (url.pathname.startsWith("/static/")) {
    event.respondWith(fileFromCache(event.request));
  } else if (url.pathname === "/scan/worklist") {
    event.respondWith(pageFromNetwork(event.request));
  }
});
