// Agent JSON Schemas → ports, port types, compatibility (the same rule as flows/validate.py) and form fields.

export function resolve(schema, root) {
  let s = schema || {};
  for (let i = 0; s.$ref && i < 20; i++) s = root?.$defs?.[s.$ref.split("/").pop()] || {};
  return s;
}

// The JSON types a schema admits, or null for "anything".
export function typesOf(schema, root) {
  const s = resolve(schema, root);
  const alts = [...(s.anyOf || []), ...(s.oneOf || [])];
  if (alts.length) {
    const out = new Set();
    for (const sub of alts) {
      const t = typesOf(sub, root);
      if (t === null) return null;
      t.forEach((x) => out.add(x));
    }
    return out;
  }
  if (s.type === undefined) return null;
  return new Set(Array.isArray(s.type) ? s.type : [s.type]);
}

export function compatible(src, tgt) {
  if (src === null || tgt === null) return true;
  const s = new Set([...src].filter((t) => t !== "null"));
  if (s.size === 0) return true;
  const t = new Set(tgt);
  if (t.has("number")) t.add("integer");
  return [...s].every((x) => t.has(x));
}

export const typeLabel = (types) => (types === null ? "any" : [...types].filter((t) => t !== "null").sort().join("/") || "null");

// Schema of a port; "variables.topic" addresses a key of a dict input.
export function portSchema(agent, side, field) {
  const root = side === "in" ? agent.input_schema : agent.output_schema;
  const [head, ...rest] = field.split(".");
  const prop = root?.properties?.[head];
  if (!prop) return null;
  if (!rest.length) return prop;
  const r = resolve(prop, root);
  if (side === "in" && r.additionalProperties !== undefined) return typeof r.additionalProperties === "object" ? r.additionalProperties : {};
  if (side === "in" && (r.type === "object" || r.type === undefined)) return {};
  return r.properties?.[rest.join(".")] ?? null;
}

export function portTypes(agent, side, field) {
  const s = portSchema(agent, side, field);
  return s === null ? undefined : typesOf(s, side === "in" ? agent.input_schema : agent.output_schema);
}

// Why a connection is refused, or null when it may be drawn.
export function connectionProblem(srcAgent, srcField, tgtAgent, tgtField) {
  if (!srcAgent || !tgtAgent) return "unknown agent";
  const st = portTypes(srcAgent, "out", srcField);
  const tt = portTypes(tgtAgent, "in", tgtField);
  if (st === undefined) return `${srcAgent.id} has no output '${srcField}'`;
  if (tt === undefined) return `${tgtAgent.id} has no input '${tgtField}'`;
  if (!compatible(st, tt)) return `${srcField} (${typeLabel(st)}) cannot feed ${tgtField} (${typeLabel(tt)})`;
  return null;
}

// Dict inputs take extra ports named "<field>.<key>".
export function isDictInput(agent, field) {
  const root = agent.input_schema;
  const r = resolve(root?.properties?.[field], root);
  const t = typesOf(r, root);
  return t !== null && t.has("object") && !r.properties;
}

export function inputFields(agent) {
  const root = agent?.input_schema || {};
  const required = new Set(root.required || []);
  return Object.entries(root.properties || {}).map(([name, prop]) => {
    const r = resolve(prop, root);
    const types = typesOf(prop, root);
    const alts = [...(r.anyOf || [])].map((a) => resolve(a, root));
    const enumValues = r.enum || alts.find((a) => a.enum)?.enum || null;
    return { name, schema: r, types, required: required.has(name), enum: enumValues,
             title: r.title || name, description: r.description || prop.description || "" };
  });
}

export function outputFields(agent) {
  return Object.keys(agent?.output_schema?.properties || {});
}

// The widget a field is edited with: the schema's own hint (x-cxmpute-widget) first, else one by type.
export function widgetFor(field) {
  if (field.schema["x-cxmpute-widget"]) return field.schema["x-cxmpute-widget"];
  if (field.enum) return "select";
  const t = field.types;
  if (t === null) return "json";
  const s = [...t].filter((x) => x !== "null");
  if (s.length === 1 && s[0] === "boolean") return "checkbox";
  if (s.length === 1 && (s[0] === "integer" || s[0] === "number")) return "number";
  if (s.length === 1 && s[0] === "string") return "text";
  return "json";
}

function bounds(schema) {
  const alts = [schema, ...(schema.anyOf || [])];
  const pick = (k) => alts.map((a) => a[k]).find((v) => v !== undefined);
  return { min: pick("minimum"), max: pick("maximum"), xmin: pick("exclusiveMinimum"), xmax: pick("exclusiveMaximum"),
           minLength: pick("minLength"), maxLength: pick("maxLength") };
}

// Client-side checks of one param value against its schema; returns a message or null.
export function checkValue(field, value) {
  if (value === undefined || value === "") return field.required ? "required" : null;
  const t = field.types;
  const b = bounds(field.schema);
  if (typeof value === "number") {
    if (t && !t.has("number") && !t.has("integer")) return `must be ${typeLabel(t)}`;
    if (t && t.has("integer") && !t.has("number") && !Number.isInteger(value)) return "must be a whole number";
    if (b.min !== undefined && value < b.min) return `must be ≥ ${b.min}`;
    if (b.max !== undefined && value > b.max) return `must be ≤ ${b.max}`;
    if (b.xmin !== undefined && value <= b.xmin) return `must be > ${b.xmin}`;
    if (b.xmax !== undefined && value >= b.xmax) return `must be < ${b.xmax}`;
  }
  if (typeof value === "string") {
    if (b.minLength !== undefined && value.length < b.minLength) return `at least ${b.minLength} characters`;
    if (b.maxLength !== undefined && value.length > b.maxLength) return `at most ${b.maxLength} characters`;
  }
  if (field.enum && !field.enum.includes(value)) return `one of ${field.enum.join(", ")}`;
  return null;
}

// The agents an "agent-list" field may name: the catalogue less the ids its schema excludes.
export function agentChoices(field, agents) {
  const excluded = new Set(field.schema["x-cxmpute-exclude"] || []);
  return Object.values(agents).filter((a) => !excluded.has(a.id)).sort((x, y) => x.id.localeCompare(y.id));
}
