// Talking to the embedsearch API: same origin only, the key from session storage as a bearer
// header, and every failure turned into one ApiError shape the page can show.

const KEY_STORAGE = "embedsearch.apiKey";

export class ApiError extends Error {
  // kind: "network" (no answer at all), "http" (the API's {"error": {...}}), "bad-response".
  constructor(kind, message, { status = 0, code = "", field = null } = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled (privacy mode): the page still works without auth
  }
}

export function storeKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* nothing to keep it in: the key lasts until reload */
  }
}

// "app;dur=12.3" -> 12.3 (ms): the server's own time, set by api/metrics.py on every response.
export function serverMillis(headers) {
  const match = /(?:^|,)\s*app;dur=([0-9.]+)/.exec(headers.get("Server-Timing") || "");
  return match ? Number(match[1]) : null;
}

async function errorFrom(response) {
  // The API always answers {"error": {code, message, field?}}; anything else (a proxy's HTML
  // page, say) is reported by status alone.
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error.message === "string") {
      const { code, message, field } = body.error;
      return new ApiError("http", message, { status: response.status, code, field });
    }
  } catch {
    /* not JSON */
  }
  return new ApiError("http", `the server answered ${response.status} ${response.statusText}`, {
    status: response.status,
  });
}

// Call the API; resolves to {data, serverMs, roundTripMs, requestId} or throws ApiError.
// `raw` sends bytes as they are (e.g. a PDF) with `contentType`, instead of `body` as JSON.
export async function api(path, { method = "GET", body, raw, contentType } = {}) {
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (raw !== undefined) headers["Content-Type"] = contentType;
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: raw !== undefined ? raw : body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError("network", "Cannot reach the server: is it running? Try again once it is.");
  }
  if (!response.ok) throw await errorFrom(response);
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      throw new ApiError("bad-response", "The server's answer was not JSON.");
    }
  }
  return {
    data,
    serverMs: serverMillis(response.headers),
    roundTripMs: performance.now() - started,
    requestId: response.headers.get("X-Request-Id"),
  };
}
