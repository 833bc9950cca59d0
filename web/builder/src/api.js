// Thin wrappers over the platform API; every failure becomes an Error carrying the server's message.

async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return answer(res);
}

async function answer(res) {
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
};

// Live run views over server-sent events: `run` carries the whole run view, `log` one log line.
export function watchRun(id, onView, onLog, onEnd) {
  const source = new EventSource(`/v1/runs/${id}/events`);
  source.addEventListener("run", (e) => onView(JSON.parse(e.data)));
  source.addEventListener("log", (e) => onLog(JSON.parse(e.data)));
  source.addEventListener("end", () => { source.close(); onEnd?.(); });
  source.onerror = () => { source.close(); onEnd?.(new Error("lost the run's event stream")); };
  return () => source.close();
}
