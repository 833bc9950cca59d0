import { memo, useEffect, useState } from "react";
import { useBuilder } from "./context.js";
import { agentChoices, checkValue, inputFields, isDictInput, widgetFor } from "./schema.js";
import { Fields } from "./Value.jsx";

const FUNCTION_PREFIX = "fn:";

// A list of agent ids picked from the catalogue, plus fn:<name> entries: functions are the owner's own
// deployments, which the catalogue does not list, so they are typed.
function AgentListEditor({ id, field, value, onChange }) {
  const agents = useBuilder((s) => s.agents);
  const [fn, setFn] = useState("");
  const items = Array.isArray(value) ? value : [];
  const set = (next) => onChange(next.length ? next : undefined);
  const full = field.schema.maxItems !== undefined && items.length >= field.schema.maxItems;
  const offered = agentChoices(field, agents).filter((a) => !items.includes(a.id));
  const typed = fn.trim();
  const entry = typed.startsWith(FUNCTION_PREFIX) ? typed : FUNCTION_PREFIX + typed;
  const canAdd = !full && entry.length > FUNCTION_PREFIX.length && !/\s/.test(entry) && !items.includes(entry);
  return (
    <div className="agent-list">
      {items.length > 0 && (
        <ul className="chips">
          {items.map((t) => (
            <li key={t} className="chip">{t}
              <button type="button" aria-label={`remove ${t}`} onClick={() => set(items.filter((x) => x !== t))}>×</button>
            </li>
          ))}
        </ul>
      )}
      <select id={id} name={field.name} value="" disabled={full} onChange={(e) => e.target.value && set([...items, e.target.value])}>
        <option value="">+ agent…</option>
        {offered.map((a) => <option key={a.id} value={a.id}>{a.name} ({a.id})</option>)}
      </select>
      <form className="add-port" onSubmit={(e) => { e.preventDefault(); if (canAdd) { set([...items, entry]); setFn(""); } }}>
        <input aria-label={`new ${field.name} function`} placeholder="fn:<function name>" value={fn} onChange={(e) => setFn(e.target.value)} />
        <button type="submit" disabled={!canAdd}>+ fn</button>
      </form>
    </div>
  );
}

function FieldEditor({ field, value, onChange, connected, serverProblem, idPrefix = "param" }) {
  const widget = widgetFor(field);
  const shown = value === undefined ? "" : widget === "json" ? JSON.stringify(value, null, 1) : value;
  const [draft, setDraft] = useState(shown);
  const [parseError, setParseError] = useState(null);
  useEffect(() => { setDraft(shown); setParseError(null); }, [JSON.stringify(value)]);

  const commit = (raw) => {
    setDraft(raw);
    if (raw === "" || raw === undefined) { setParseError(null); onChange(undefined); return; }
    if (widget === "number") {
      const n = Number(raw);
      if (Number.isNaN(n)) { setParseError("must be a number"); return; }
      setParseError(null); onChange(n); return;
    }
    if (widget === "json") {
      try { setParseError(null); onChange(JSON.parse(raw)); } catch { setParseError("not valid JSON"); }
      return;
    }
    setParseError(null); onChange(raw);
  };
  const problem = parseError || (connected ? null : checkValue(field, value)) || serverProblem;
  const id = `${idPrefix}-${field.name}`;
  let input;
  if (widget === "agent-list") {
    input = <AgentListEditor id={id} field={field} value={value} onChange={onChange} />;
  } else if (widget === "checkbox") {
    input = <input id={id} name={field.name} type="checkbox" checked={Boolean(value ?? field.schema.default)}
                   onChange={(e) => onChange(e.target.checked)} />;
  } else if (widget === "select") {
    input = (
      <select id={id} name={field.name} value={value ?? field.schema.default ?? ""} onChange={(e) => commit(e.target.value)}>
        <option value="">—</option>
        {field.enum.map((v) => <option key={v} value={v}>{v}</option>)}
      </select>
    );
  } else if (widget === "json" || (widget === "text" && (field.name === "template" || field.name === "prompt" || String(draft).length > 60))) {
    input = <textarea id={id} name={field.name} rows={3} value={draft} placeholder={field.schema.default !== undefined ? JSON.stringify(field.schema.default) : ""}
                      onChange={(e) => commit(e.target.value)} />;
  } else {
    input = <input id={id} name={field.name} type={widget === "number" ? "number" : "text"} value={draft}
                   step="any" placeholder={field.schema.default !== undefined && field.schema.default !== null ? String(field.schema.default) : ""}
                   onChange={(e) => commit(e.target.value)} />;
  }
  return (
    <div className={`field ${problem ? "field-invalid" : ""}`} data-field={`${idPrefix}.${field.name}`}>
      <label htmlFor={id}>{field.title}{field.required && <span className="req">*</span>}
        {connected && <span className="muted"> (connected)</span>}</label>
      {input}
      {field.description && <small className="muted">{field.description}</small>}
      {problem && <div className="field-error" role="alert">{problem}</div>}
    </div>
  );
}

function AddPort({ field, onAdd }) {
  const [key, setKey] = useState("");
  const ok = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key);
  return (
    <form className="add-port" onSubmit={(e) => { e.preventDefault(); if (ok) { onAdd(`${field}.${key}`); setKey(""); } }}>
      <input aria-label={`new ${field} port`} placeholder={`add ${field} port`} value={key} onChange={(e) => setKey(e.target.value)} />
      <button type="submit" disabled={!ok}>+ port</button>
    </form>
  );
}

function InspectorPanel({ node, agent, edges, problems, run, optionsSchema, onParams, onOptions, onLabel, onAddPort,
                           onRerun, canRerun }) {
  if (!node) return <div className="inspector muted">Select a node to edit its params.</div>;
  if (!agent) return <div className="inspector">Unknown agent {node.data.agent}</div>;
  const fed = new Set(edges.filter((e) => e.target === node.id).map((e) => e.targetHandle.slice(3).split(".")[0]));
  const mine = problems.filter((p) => p.node === node.id);
  const setParam = (name, v) => {
    const params = { ...(node.data.params || {}) };
    if (v === undefined) delete params[name]; else params[name] = v;
    onParams(params);
  };
  return (
    <div className="inspector" data-testid="inspector">
      <h3>{agent.name} <span className="muted">{agent.id}</span></h3>
      <p className="muted">{agent.description}</p>
      <div className="field">
        <label htmlFor="node-label">Label</label>
        <input id="node-label" value={node.data.label || ""} onChange={(e) => onLabel(e.target.value)} />
      </div>
      {inputFields(agent).map((f) => (
        <div key={`${node.id}:${f.name}`}>
          <FieldEditor field={f} value={node.data.params?.[f.name]} connected={fed.has(f.name)}
                       serverProblem={mine.find((p) => p.field === f.name || p.field === `params.${f.name}` || p.field?.startsWith(`params.${f.name}.`))?.message}
                       onChange={(v) => setParam(f.name, v)} />
          {isDictInput(agent, f.name) && <AddPort field={f.name} onAdd={onAddPort} />}
        </div>
      ))}
      {optionsSchema && (
        <details className="options" key={node.id}>
          <summary>Run options</summary>
          {inputFields({ input_schema: optionsSchema }).map((f) => (
            <FieldEditor key={`${node.id}:options:${f.name}`} field={f} idPrefix="option" value={node.data.options?.[f.name]} connected={false}
                         serverProblem={mine.find((p) => p.field === `options.${f.name}`)?.message}
                         onChange={(v) => {
                           const options = { ...(node.data.options || {}) };
                           if (v === undefined) delete options[f.name]; else options[f.name] = v;
                           onOptions(Object.keys(options).length ? options : undefined);
                         }} />
          ))}
        </details>
      )}
      {run && (
        <div className="last-run" data-testid="last-run">
          <h4>Last run: <span className={`badge badge-${run.state}`}>{run.state}</span>
            {run.attempts > 1 && <span className="muted"> {run.attempts} attempts</span>}</h4>
          {run.error && <div className="problem">{run.error}</div>}
          {run.inputs && <><h5>Inputs</h5><Fields data={run.inputs} /></>}
          {run.output && <><h5>Output</h5><Fields data={run.output} /></>}
        </div>
      )}
      {canRerun && <button onClick={onRerun} data-testid="run-from-here">Run from here</button>}
    </div>
  );
}

// The panel reads the selected node's id and data, never its position: kept from redrawing while it is dragged.
export const Inspector = memo(InspectorPanel);
