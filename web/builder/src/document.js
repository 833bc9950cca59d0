// The canvas ↔ the workflow document `cxmpute run` takes. Keys a document did not have are never added,
// so importing and exporting gives the same document back.

const NODE_KEYS = ["agent_version", "label", "options"];

export function fromDocument(doc) {
  const { nodes: docNodes = [], edges: docEdges = [], ...meta } = doc || {};
  const nodes = docNodes.map((n) => ({
    id: n.id,
    type: "agent",
    position: { x: n.position?.x ?? 0, y: n.position?.y ?? 0 },
    data: {
      agent: n.agent,
      params: n.params || {},
      hasParams: "params" in n,
      ...Object.fromEntries(NODE_KEYS.filter((k) => k in n).map((k) => [k, n[k]])),
    },
  }));
  const edges = docEdges.map((e) => edgeOf(e.source, e.source_field, e.target, e.target_field));
  // A document written by hand or by a program may leave positions out: lay it out rather than stack it.
  const placed = docNodes.every((n) => n.position && Number.isFinite(n.position.x) && Number.isFinite(n.position.y));
  return { meta, nodes: placed ? nodes : autoLayout(nodes, edges), edges };
}

export function edgeOf(source, sourceField, target, targetField) {
  return { id: `${source}.${sourceField}->${target}.${targetField}`, source, target,
           sourceHandle: `out:${sourceField}`, targetHandle: `in:${targetField}` };
}

const round = (v) => Math.round(v * 100) / 100;

export function toDocument(meta, nodes, edges) {
  const inputs = { ...(meta.inputs || {}) };
  for (const n of nodes) {
    // an Input node declares the workflow input it reads, so a drawn workflow runs without a separate form
    if (n.data.agent === "io.input") {
      const name = n.data.params?.name ?? "input";
      if (!(name in inputs)) inputs[name] = { type: "string" };
    }
  }
  const doc = { ...meta };
  if (Object.keys(inputs).length || "inputs" in meta) doc.inputs = inputs;
  doc.nodes = nodes.map((n) => {
    const out = { id: n.id, agent: n.data.agent };
    for (const k of NODE_KEYS) if (n.data[k] !== undefined) out[k] = n.data[k];
    if (n.data.hasParams !== false || Object.keys(n.data.params || {}).length) out.params = n.data.params || {};
    out.position = { x: round(n.position.x), y: round(n.position.y) };
    return out;
  });
  doc.edges = edges.map((e) => ({ source: e.source, source_field: e.sourceHandle.slice(4),
                                  target: e.target, target_field: e.targetHandle.slice(3) }));
  return doc;
}

// Layered layout: each node one column right of its deepest upstream node.
export function autoLayout(nodes, edges) {
  const depth = Object.fromEntries(nodes.map((n) => [n.id, 0]));
  for (let pass = 0; pass < nodes.length; pass++) {
    let changed = false;
    for (const e of edges) {
      if (depth[e.source] !== undefined && depth[e.target] !== undefined && depth[e.target] < depth[e.source] + 1) {
        depth[e.target] = depth[e.source] + 1;
        changed = true;
      }
    }
    if (!changed) break;
  }
  const rows = {};
  return nodes.map((n) => {
    const col = depth[n.id];
    const row = (rows[col] = (rows[col] ?? -1) + 1);
    return { ...n, position: { x: col * 300, y: row * 180 } };
  });
}

export function freshId(base, taken) {
  const stem = base.replace(/[^A-Za-z0-9_-]/g, "_");
  for (let i = 1; ; i++) if (!taken.has(`${stem}_${i}`)) return `${stem}_${i}`;
}
