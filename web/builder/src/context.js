import { createContext, useContext, useSyncExternalStore } from "react";

// What the canvas's nodes read besides their own data: the catalogue, the run's view, the server's problems
// by node and the dict-key ports edges feed, by node. It is a store, not a context value, so that a change
// re-renders only the nodes whose slice of it changed: with a thousand nodes, one changed context value
// re-renders all of them.
export function createBuilderStore() {
  let state = { agents: {}, known: false, runView: null, problems: new Map(), keyPorts: new Map() };
  const listeners = new Set();
  return {
    get: () => state,
    set(patch) {
      state = { ...state, ...patch };
      listeners.forEach((listener) => listener());
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export const BuilderContext = createContext(createBuilderStore());

// The selector must return a primitive or a value kept by the store, so an unchanged slice compares equal.
export function useBuilder(selector) {
  const store = useContext(BuilderContext);
  return useSyncExternalStore(store.subscribe, () => selector(store.get()));
}

export const NO_PROBLEMS = [];

// Problems grouped by node; a node whose problems read the same as before keeps its array.
export function problemsByNode(problems, previous) {
  const out = new Map();
  for (const p of problems) {
    if (!p.node) continue;
    if (!out.has(p.node)) out.set(p.node, []);
    out.get(p.node).push(p);
  }
  for (const [id, mine] of out) {
    const before = previous.get(id);
    if (before && JSON.stringify(before) === JSON.stringify(mine)) out.set(id, before);
  }
  return out;
}

// The dict-key ports ("variables.topic") each node's incoming edges feed, sorted and joined by newlines:
// a string compares equal while a node's set of ports stays the same.
export function keyPortsByNode(edges) {
  const sets = new Map();
  for (const e of edges) {
    const field = e.targetHandle.slice(3);
    if (!field.includes(".")) continue;
    if (!sets.has(e.target)) sets.set(e.target, new Set());
    sets.get(e.target).add(field);
  }
  const out = new Map();
  for (const [id, fields] of sets) out.set(id, [...fields].sort().join("\n"));
  return out;
}
