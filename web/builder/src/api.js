// Thin wrappers over the platform API; every failure becomes an Error carrying the server's message.

const TOKEN_KEY = "cxmpute.session";

// The signed-in wallet's session ({token, address}), or null for the local single-user default.
export const session = {
  get: () => { try { return JSON.parse(localStorage.getItem(TOKEN_KEY)); } catch { return null; } },
  set: (value) => (value ? localStorage.setItem(TOKEN_KEY, JSON.stringify(value)) : localStorage.removeItem(TOKEN_KEY)),
};

function headers(json) {
  const out = json ? { "content-type": "application/json" } : {};
  const token = session.get()?.token;
  if (token) out.authorization = `Bearer ${token}`;
  return out;
}

async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return answer(res);
}

// The body of an answer, or an Error carrying the server's message (and the field it names).
export async function answer(res) {
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail ?? data);
    const err = new Error(data.field ? `${data.field}: ${detail}` : detail);
    err.status = res.status;
    err.body = data;
    throw err;
  }
  return data;
}

export const api = {
  agents: () => call("GET", "/v1/agents"),
  templates: () => call("GET", "/v1/workflows/templates"),
  schema: () => call("GET", "/v1/workflows/schema"),
  validate: (doc) => call("POST", "/v1/workflows/validate", doc),
  list: () => call("GET", "/v1/workflows?limit=500"),
  get: (id) => {
    const early = window.__openingWorkflow;
    if (early?.id === id) { delete window.__openingWorkflow; return early.response.then(answer); }
    return call("GET", `/v1/workflows/${encodeURIComponent(id)}`);
  },
  create: (doc) => call("POST", "/v1/workflows", doc),
  update: (id, doc) => call("PUT", `/v1/workflows/${encodeURIComponent(id)}`, doc),
  remove: (id) => call("DELETE", `/v1/workflows/${encodeURIComponent(id)}`),
  runSaved: (id, inputs) => call("POST", `/v1/workflows/${encodeURIComponent(id)}/runs`, { inputs }),
  runDocument: (document, inputs) => call("POST", "/v1/runs", { document, inputs }),
  runs: (workflowId) => call("GET", `/v1/runs?limit=50${workflowId ? `&workflow_id=${encodeURIComponent(workflowId)}` : ""}`),
  run: (id) => call("GET", `/v1/runs/${id}`),
  resume: (id, reply) => call("POST", `/v1/runs/${id}/resume`, reply),
  rerun: (id, node) => call("POST", `/v1/runs/${id}/rerun`, { node }),
  cancel: (id) => call("POST", `/v1/runs/${id}/cancel`),
  nonce: () => call("GET", "/v1/auth/nonce"),
  verify: (message, signature) => call("POST", "/v1/auth/verify", { message, signature }),
  logout: () => call("POST", "/v1/auth/logout"),
};

// Live run views over server-sent events: `run` carries the whole run view, `log` one log line. Read with
// fetch rather than EventSource, which cannot send the session's Authorization header.
export function watchRun(id, onView, onLog, onEnd) {
  const abort = new AbortController();
  const handlers = { run: onView, log: onLog };
  (async () => {
    const res = await fetch(`/v1/runs/${id}/events`, { headers: headers(false), signal: abort.signal });
    if (!res.ok) throw new Error(`run events: ${(await res.json().catch(() => ({}))).detail || res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const name = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (name && data !== undefined) handlers[name]?.(JSON.parse(data));
      }
    }
    onEnd?.();
  })().catch((err) => { if (err.name !== "AbortError") onEnd?.(err); });
  return () => abort.abort();
}
