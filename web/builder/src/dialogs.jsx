import { useEffect, useState } from "react";
import { api } from "./api.js";

function Dialog({ title, onClose, children, role = "dialog" }) {
  useEffect(() => {
    const onKey = (e) => e.key === "Escape" && onClose();
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);
  return (
    <div className="backdrop" onClick={onClose}>
      <div className="dialog" role={role} aria-label={title} onClick={(e) => e.stopPropagation()}>
        <header><h3>{title}</h3><button onClick={onClose} aria-label="Close">×</button></header>
        {children}
      </div>
    </div>
  );
}

// A run by its workflow's name when the API gives it (as `workflow_name` or `workflow`; older platforms give
// neither), and when it started.
const runTitle = (run) => {
  const when = new Date(run.created_at).toLocaleString();
  const name = run.workflow_name || run.workflow;
  return typeof name === "string" && name ? `${name} · ${when}` : when;
};

// A question before an action that cannot be undone. The safe answer has the focus, so that Enter or Escape
// pressed by habit leaves things as they are.
export function ConfirmDialog({ title, message, confirm, dismiss, onConfirm, onClose }) {
  return (
    <Dialog title={title} onClose={onClose} role="alertdialog">
      <p>{message}</p>
      <div className="dialog-actions">
        <button onClick={onClose} autoFocus>{dismiss}</button>
        <button className="danger" onClick={onConfirm}>{confirm}</button>
      </div>
    </Dialog>
  );
}

// Saved workflows (newest first) or, with `runs`, the run history.
export function FilesDialog({ runs = false, workflowId, onOpen, onClose }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const [onlyThis, setOnlyThis] = useState(Boolean(workflowId));
  useEffect(() => {
    const load = runs ? api.runs(onlyThis ? workflowId : undefined) : api.list();
    load.then((r) => setItems(r.items)).catch((err) => setError(err.message));
  }, [runs, onlyThis]);
  return (
    <Dialog title={runs ? "Run history" : "Open workflow"} onClose={onClose}>
      {runs && workflowId && (
        <label><input type="checkbox" checked={onlyThis} onChange={(e) => setOnlyThis(e.target.checked)} /> this workflow only</label>
      )}
      {error && <div className="problem">{error}</div>}
      {items === null && !error && <p className="muted">Loading…</p>}
      {items?.length === 0 && <p className="muted">Nothing yet.</p>}
      <ul className="list">
        {items?.map((it) => (
          <li key={it.id}><button className="link" onClick={() => onOpen(it.id)} data-testid={runs ? "run-item" : "workflow-item"}>
            {runs ? runTitle(it) : it.name}</button>
            {runs && it.state && <span className={`badge badge-${it.state}`} data-testid="run-item-state">{it.state}</span>}
            <span className="muted">{runs ? `${it.id.slice(0, 8)}${it.workflow_version ? ` · v${it.workflow_version}` : ""}`
              : `v${it.version} · ${new Date(it.updated_at).toLocaleString()}`}</span></li>
        ))}
      </ul>
    </Dialog>
  );
}

export function TemplatesDialog({ onPick, onClose }) {
  const [items, setItems] = useState(null);
  useEffect(() => { api.templates().then(setItems).catch(() => setItems([])); }, []);
  return (
    <Dialog title="Templates" onClose={onClose}>
      <div className="gallery">
        {items?.map((t) => (
          <button key={t.id} className="card" onClick={() => onPick(t.document)} data-template={t.id}>
            <strong>{t.name}</strong><span>{t.description}</span>
            <small className="muted">{t.document.nodes?.length || 0} nodes</small>
          </button>
        ))}
      </div>
    </Dialog>
  );
}

// The workflow's named inputs, with their defaults, before a run starts.
export function RunDialog({ document, onRun, onClose }) {
  const declared = Object.entries(document.inputs || {});
  const [values, setValues] = useState(Object.fromEntries(declared.map(([k, spec]) =>
    [k, spec.default === undefined || spec.default === null ? "" : typeof spec.default === "string" ? spec.default : JSON.stringify(spec.default)])));
  const missing = declared.filter(([k, spec]) => spec.required && values[k] === "").map(([k]) => k);
  const submit = (e) => {
    e.preventDefault();
    if (missing.length) return;
    const inputs = {};
    for (const [k, spec] of declared) {
      const raw = values[k];
      if (raw === "") continue;
      if ((spec.type || "string") === "string") inputs[k] = raw;
      else { try { inputs[k] = JSON.parse(raw); } catch { inputs[k] = raw; } }
    }
    onRun(inputs);
  };
  return (
    <Dialog title="Run workflow" onClose={onClose}>
      <form onSubmit={submit} className="run-form">
        {declared.length === 0 && <p className="muted">This workflow takes no inputs.</p>}
        {declared.map(([k, spec]) => (
          <div className={`field ${missing.includes(k) ? "field-invalid" : ""}`} key={k}>
            <label htmlFor={`input-${k}`}>{k}{spec.required && <span className="req">*</span>} <span className="muted">{spec.type || "string"}</span></label>
            <input id={`input-${k}`} name={k} value={values[k]} onChange={(e) => setValues({ ...values, [k]: e.target.value })} />
            {spec.description && <small className="muted">{spec.description}</small>}
            {missing.includes(k) && <div className="field-error">required</div>}
          </div>
        ))}
        <button type="submit" className="primary" data-testid="start-run">Start run</button>
      </form>
    </Dialog>
  );
}
