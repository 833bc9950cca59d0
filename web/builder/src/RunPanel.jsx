import { useState } from "react";
import { Fields, Value } from "./Value.jsx";

// A Python traceback is for the platform's own logs: a person reads the text before it and its last line,
// the exception's message.
const TRACEBACK = "Traceback (most recent call last):";
function withoutTraceback(text) {
  if (typeof text !== "string" || !text.includes(TRACEBACK)) return text;
  const before = text.slice(0, text.indexOf(TRACEBACK)).trim();
  const last = text.trim().split("\n").pop().trim();
  return before ? `${before}\n${last}` : last;
}

// Tasks the engine runs to carry a node elsewhere are not nodes of the workflow.
const internal = (id) => typeof id === "string" && id.startsWith("run_node");

// The run's state, per-node states, final output, and the approval prompt of a waiting run.
function Approval({ node, prompt, onAnswer }) {
  const [value, setValue] = useState("");
  const [comment, setComment] = useState("");
  const parsed = () => { if (value === "") return null; try { return JSON.parse(value); } catch { return value; } };
  return (
    <div className="approval" data-testid="approval">
      <h4>{node.node} asks: {prompt || "Approve to continue"}</h4>
      {node.inputs?.value !== undefined && <Fields data={{ value: node.inputs.value }} />}
      <input placeholder="Replacement value (optional)" value={value} onChange={(e) => setValue(e.target.value)} />
      <input placeholder="Comment" value={comment} onChange={(e) => setComment(e.target.value)} />
      <button className="primary" onClick={() => onAnswer(true, parsed(), comment)}>Approve</button>
      <button onClick={() => onAnswer(false, null, comment)}>Reject</button>
    </div>
  );
}

// A run can be stopped until it ends, also while it waits for a person's approval.
const CANCELLABLE = new Set(["pending", "running", "waiting"]);

export function RunPanel({ view, logs, nodes: drawn, edges, onAnswer, onCancel }) {
  if (!view) return null;
  const nodes = Object.values(view.nodes || {}).filter((n) => !internal(n.node));
  const feeding = new Set(edges.map((e) => e.source));
  const sinks = nodes.filter((n) => !feeding.has(n.node) && n.output);
  const final = view.outputs && Object.keys(view.outputs).length ? view.outputs
    : Object.fromEntries(sinks.map((n) => [n.node, n.output]));
  return (
    <div className="run-panel" data-testid="run-panel" data-run={view.id} data-state={view.state}>
      <h3>Run <span className={`badge badge-${view.state}`} data-testid="run-state">{view.state}</span></h3>
      <code className="muted">{view.id}</code>
      {CANCELLABLE.has(view.state) && (
        <div className="run-actions">
          <button onClick={onCancel} aria-haspopup="dialog" data-testid="cancel-run">Cancel run</button>
        </div>
      )}
      {view.error && <div className="problem run-error">{withoutTraceback(view.error)}</div>}
      <ul className="node-states">
        {nodes.map((n) => (
          <li key={n.node}><span className={`dot dot-${n.state}`} />{n.node} <span className="muted">{n.state}
            {n.attempts > 1 ? ` · ${n.attempts} attempts` : ""}{n.cached ? " · cached" : ""}</span>
            {n.error && <div className="problem node-error">{withoutTraceback(n.error)}</div>}</li>
        ))}
      </ul>
      {(view.waiting_for || []).map((id) => view.nodes[id] && (
        <Approval key={id} node={view.nodes[id]} onAnswer={onAnswer}
                  prompt={drawn.find((n) => n.id === id)?.data.params?.prompt} />
      ))}
      {logs.length > 0 && (
        <details className="logs" open={view.state === "failed"}>
          <summary>Logs ({logs.length})</summary>
          <pre data-testid="logs">{logs.map((l) => `${l.time.slice(11, 19)} ${l.node && !internal(l.node) ? `[${l.node}] ` : ""}${withoutTraceback(l.message)}`).join("\n")}</pre>
        </details>
      )}
      {view.state === "completed" && Object.keys(final).length > 0 && (
        <div className="final-output" data-testid="final-output">
          <h4>Output</h4>
          {Object.entries(final).map(([k, v]) => (
            <div key={k}><h5>{k}</h5>{v && typeof v === "object" && !Array.isArray(v) ? <Fields data={v} /> : <Value value={v} />}</div>
          ))}
        </div>
      )}
    </div>
  );
}
