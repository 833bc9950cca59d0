import { memo, useContext } from "react";
import { Handle, Position } from "@xyflow/react";
import { BuilderContext } from "./context.js";
import { inputFields, outputFields, portTypes, typeLabel, widgetFor } from "./schema.js";

// A node: its agent's typed input ports (plus added dict-key ports) on the left, outputs on the right,
// its last run's state and any validation problems the server reported for it.
function AgentNode({ id, data, selected }) {
  const { agents, runView, problems, edges } = useContext(BuilderContext);
  const agent = agents[data.agent];
  const run = runView?.nodes?.[id];
  const mine = problems.filter((p) => p.node === id);
  const state = run?.state;
  if (!agent) {
    const known = Object.keys(agents).length > 0;
    return (
      <div className="node node-unknown" data-node={id}>
        <div className="node-head"><span className="node-title">{data.agent}</span><span className="node-id">{id}</span></div>
        {known && <div className="problem node-error">unknown agent {data.agent}</div>}
      </div>
    );
  }
  const keyPorts = new Set([...(data.ports || [])]);
  for (const e of edges) if (e.target === id && e.targetHandle.slice(3).includes(".")) keyPorts.add(e.targetHandle.slice(3));
  const fields = inputFields(agent);
  // Picked agent lists (an agent's tools) show on the card, so the graph reads without opening each node.
  const lists = fields.filter((f) => widgetFor(f) === "agent-list" && Array.isArray(data.params?.[f.name]) && data.params[f.name].length);
  const ins = [];
  for (const f of fields) {
    ins.push(f.name);
    for (const k of [...keyPorts].filter((p) => p.startsWith(`${f.name}.`)).sort()) ins.push(k);
  }
  const outs = outputFields(agent);
  return (
    <div className={`node ${selected ? "selected" : ""} ${mine.length ? "invalid" : ""} ${state ? `state-${state}` : ""}`}
         data-node={id} data-state={state || ""}>
      <div className="node-head">
        <span className="node-title">{data.label || agent.name}</span>
        <span className="node-id">{id}</span>
        {state && <span className={`badge badge-${state}`} data-testid="node-state">{state}</span>}
      </div>
      {lists.map((f) => (
        <ul className="chips node-chips" key={f.name} data-testid="node-chips" data-field={f.name} title={f.title}>
          {data.params[f.name].map((t) => <li key={t} className="chip">{t}</li>)}
        </ul>
      ))}
      <div className="ports">
        <div className="port-col">
          {ins.map((name) => (
            <div className={`port port-in ${name.includes(".") ? "port-key" : ""}`} key={name} data-port={`in:${name}`}>
              <Handle type="target" position={Position.Left} id={`in:${name}`} />
              <span>{name.includes(".") ? `↳ ${name.split(".").slice(1).join(".")}` : name}</span>
              <em>{typeLabel(portTypes(agent, "in", name))}</em>
            </div>
          ))}
        </div>
        <div className="port-col port-col-out">
          {outs.map((name) => (
            <div className="port port-out" key={name} data-port={`out:${name}`}>
              <em>{typeLabel(portTypes(agent, "out", name))}</em>
              <span>{name}</span>
              <Handle type="source" position={Position.Right} id={`out:${name}`} />
            </div>
          ))}
        </div>
      </div>
      {mine.length > 0 && (
        <ul className="problems" data-testid="node-problems">
          {mine.map((p, i) => <li key={i} className="problem">{p.field ? `${p.field}: ` : ""}{p.message}</li>)}
        </ul>
      )}
      {run?.error && <div className="problem node-error">{run.error}</div>}
    </div>
  );
}

export default memo(AgentNode);
