import { memo, useState } from "react";
import { Handle, Position, useNodeId, useStoreApi } from "@xyflow/react";
import { NO_PROBLEMS, useBuilder } from "./context.js";
import { inputFields, outputFields, portTypes, typeLabel, widgetFor } from "./schema.js";

// What a node card derives from its agent's schemas, worked out once per agent rather than once per node
// and render: a large workflow repeats a few agents many times.
const shapes = new WeakMap();
function shapeOf(agent) {
  let shape = shapes.get(agent);
  if (!shape) {
    const fields = inputFields(agent);
    shape = { fields, lists: fields.filter((f) => widgetFor(f) === "agent-list"), outs: outputFields(agent), labels: new Map() };
    shapes.set(agent, shape);
  }
  return shape;
}
function portLabel(agent, side, name) {
  const { labels } = shapeOf(agent);
  const key = `${side}:${name}`;
  if (!labels.has(key)) labels.set(key, typeLabel(portTypes(agent, side, name)));
  return labels.get(key);
}

// A port's connection point before the pointer has come over its node: the element React Flow's handle renders
// when no connection is being drawn (same classes and data attributes, so it is measured, styled and found as an
// end of a connection alike), without the handle's subscription to the canvas's store. Every handle is woken on
// each change of that store, every step of a drag among them: thousands of idle handles cost a frame.
function RestingHandle({ type, position, id }) {
  const nodeId = useNodeId();
  const { rfId, noPanClassName } = useStoreApi().getState();
  return (
    <div data-handleid={id} data-nodeid={nodeId} data-handlepos={position} data-id={`${rfId}-${nodeId}-${id}-${type}`}
         className={`react-flow__handle react-flow__handle-${position} nodrag ${noPanClassName} ${type} connectable connectablestart connectableend connectionindicator`} />
  );
}

// A node: its agent's typed input ports (plus added dict-key ports) on the left, outputs on the right,
// its last run's state and any validation problems the server reported for it.
function AgentNode({ id, data, selected }) {
  const agent = useBuilder((s) => s.agents[data.agent]);
  const known = useBuilder((s) => s.known);
  const state = useBuilder((s) => s.runView?.nodes?.[id]?.state);
  const runError = useBuilder((s) => s.runView?.nodes?.[id]?.error);
  const mine = useBuilder((s) => s.problems.get(id) ?? NO_PROBLEMS);
  const fedKeys = useBuilder((s) => s.keyPorts.get(id) ?? "");
  // Real handles from the moment the pointer first enters the card, before it can press on one; they stay.
  const [live, setLive] = useState(false);
  const PortHandle = live ? Handle : RestingHandle;
  if (!agent) {
    return (
      <div className="node node-unknown" data-node={id}>
        <div className="node-head"><span className="node-title">{data.agent}</span><span className="node-id">{id}</span></div>
        {known && <div className="problem node-error">unknown agent {data.agent}</div>}
      </div>
    );
  }
  const keyPorts = new Set(data.ports || []);
  if (fedKeys) for (const k of fedKeys.split("\n")) keyPorts.add(k);
  const { fields, lists: listFields, outs } = shapeOf(agent);
  // Picked agent lists (an agent's tools) show on the card, so the graph reads without opening each node.
  const lists = listFields.filter((f) => Array.isArray(data.params?.[f.name]) && data.params[f.name].length);
  const ins = [];
  for (const f of fields) {
    ins.push(f.name);
    if (keyPorts.size) for (const k of [...keyPorts].filter((p) => p.startsWith(`${f.name}.`)).sort()) ins.push(k);
  }
  return (
    <div className={`node ${selected ? "selected" : ""} ${mine.length ? "invalid" : ""} ${state ? `state-${state}` : ""}`}
         data-node={id} data-state={state || ""} onPointerEnter={live ? undefined : () => setLive(true)}>
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
              <PortHandle type="target" position={Position.Left} id={`in:${name}`} />
              <span>{name.includes(".") ? `↳ ${name.split(".").slice(1).join(".")}` : name}</span>
              <em>{portLabel(agent, "in", name)}</em>
            </div>
          ))}
        </div>
        <div className="port-col port-col-out">
          {outs.map((name) => (
            <div className="port port-out" key={name} data-port={`out:${name}`}>
              <em>{portLabel(agent, "out", name)}</em>
              <span>{name}</span>
              <PortHandle type="source" position={Position.Right} id={`out:${name}`} />
            </div>
          ))}
        </div>
      </div>
      {mine.length > 0 && (
        <ul className="problems" data-testid="node-problems">
          {mine.map((p, i) => <li key={i} className="problem">{p.field ? `${p.field}: ` : ""}{p.message}</li>)}
        </ul>
      )}
      {runError && <div className="problem node-error">{runError}</div>}
    </div>
  );
}

// A node's card depends on its id, data and selection only; the canvas also passes its position and drag
// state, which change on every step of a drag and would redraw the card for nothing.
export default memo(AgentNode, (a, b) => a.id === b.id && a.data === b.data && a.selected === b.selected);
