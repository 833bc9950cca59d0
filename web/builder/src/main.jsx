import { StrictMode, useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import { createRoot } from "react-dom/client";
import {
  Background, Controls, MiniMap, ReactFlow, ReactFlowProvider, addEdge, useEdgesState, useNodesInitialized,
  useNodesState, useReactFlow,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import YAML from "yaml";
import "./styles.css";
import { api, session, watchRun } from "./api.js";
import { signIn, signOut } from "./wallet.js";
import AgentNode from "./AgentNode.jsx";
import { BuilderContext, createBuilderStore, keyPortsByNode, problemsByNode } from "./context.js";
import { autoLayout, edgeOf, freshId, fromDocument, toDocument } from "./document.js";
import { Inspector } from "./Inspector.jsx";
import { DRAG_TYPE, Palette } from "./Palette.jsx";
import { RunPanel } from "./RunPanel.jsx";
import { connectionProblem } from "./schema.js";
import { ConfirmDialog, FilesDialog, RunDialog, TemplatesDialog } from "./dialogs.jsx";

const nodeTypes = { agent: AgentNode };
// The canvas takes its settings as props and copies each one that changed into its store, which wakes every
// node, edge and handle: props must keep their identity from one render to the next.
const DELETE_KEYS = ["Backspace", "Delete"];
const MULTI_SELECT_KEYS = ["Shift", "Meta", "Control"];
const DEFAULT_VIEWPORT = { x: 0, y: 0, zoom: 1 };
const NONE = [];
const EMPTY_META = { version: 1, name: "untitled" };
const HISTORY_LIMIT = 100;
const LOG_LIMIT = 500;
const TOAST_SECONDS = 8;
const FINISHED = ["completed", "failed", "cancelled"];
const typing = (el) => el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);

function Editor() {
  const flow = useReactFlow();
  const [agents, setAgents] = useState([]);
  const [optionsSchema, setOptionsSchema] = useState(null);
  const [meta, setMeta] = useState(EMPTY_META);
  const [nodes, setNodes, onNodesChange] = useNodesState([]);
  const [edges, setEdges, onEdgesChange] = useEdgesState([]);
  const [saved, setSaved] = useState(null); // {id, version}
  const [problems, setProblems] = useState([]);
  const [runView, setRunView] = useState(null);
  const [logs, setLogs] = useState([]);
  const [savedKey, setSavedKey] = useState(null);
  const [owner, setOwner] = useState(() => session.get()?.address || "local");
  const [opening, setOpening] = useState(() => /#w=/.test(location.hash));
  const [toast, setToast] = useState(null);
  const [dialog, setDialog] = useState(null);
  const undo = useRef([]);
  const redo = useRef([]);
  const clipboard = useRef(null);
  const stopWatch = useRef(null);
  const catalogue = useRef(null);
  const state = useRef({});
  state.current = { meta, nodes, edges };

  const agentMap = useMemo(() => Object.fromEntries(agents.map((a) => [a.id, a])), [agents]);
  const [store] = useState(createBuilderStore);
  // Before the canvas draws (its nodes follow in its own effects), so no node shows a stale slice.
  useLayoutEffect(() => store.set({ agents: agentMap, known: agents.length > 0 }), [store, agentMap]);
  useLayoutEffect(() => store.set({ runView }), [store, runView]);
  useLayoutEffect(() => store.set({ problems: problemsByNode(problems, store.get().problems) }), [store, problems]);
  useLayoutEffect(() => store.set({ keyPorts: keyPortsByNode(edges) }), [store, edges]);
  const say = useCallback((text, kind = "info") => setToast({ text, kind, at: Date.now() }), []);
  const documentNow = useCallback(() => {
    const s = state.current;
    return toDocument(s.meta, s.nodes, s.edges);
  }, []);

  // --- undo / redo ----------------------------------------------------------------------------
  const record = useCallback(() => {
    const s = state.current;
    undo.current.push({ meta: s.meta, nodes: s.nodes, edges: s.edges });
    if (undo.current.length > HISTORY_LIMIT) undo.current.shift();
    redo.current = [];
  }, []);
  const restore = (from, to) => {
    const snap = from.current.pop();
    if (!snap) return;
    const s = state.current;
    to.current.push({ meta: s.meta, nodes: s.nodes, edges: s.edges });
    setMeta(snap.meta); setNodes(snap.nodes); setEdges(snap.edges);
  };

  // --- loading documents ----------------------------------------------------------------------
  const load = useCallback((doc, savedRef = null) => {
    const { meta: m, nodes: n, edges: e } = fromDocument(doc);
    setMeta(m); setNodes(n); setEdges(e); setSaved(savedRef); setRunView(null); setProblems([]);
    setSavedKey(savedRef ? JSON.stringify(toDocument(m, n, e)) : null);
    undo.current = []; redo.current = [];
    history.replaceState(null, "", savedRef ? `#w=${savedRef.id}` : "#");
    requestAnimationFrame(() => flow.fitView({ duration: 0 }));
  }, [flow, setNodes, setEdges]);

  const openSaved = useCallback(async (id) => {
    try {
      const wf = await api.get(id);
      // Nodes drawn before their agents are known are drawn, measured and laid out a second time once the
      // catalogue arrives: for a large workflow that doubles the time to the first useful paint.
      await catalogue.current;
      load(wf.document, { id: wf.id, version: wf.version });
    } catch (err) { say(`Could not open ${id}: ${err.message}`, "error"); }
    setOpening(false);
  }, [load, say]);

  useEffect(() => {
    catalogue.current = api.agents().then((r) => setAgents(r.items))
      .catch((err) => say(`Could not load agents: ${err.message}`, "error"));
    api.schema().then((schema) => setOptionsSchema(schema.$defs?.NodeOptions ?? null)).catch(() => setOptionsSchema(null));
    const m = /#w=([^&]+)/.exec(location.hash);
    if (m) openSaved(decodeURIComponent(m[1]));
  }, []);

  // --- validation on the server, debounced --------------------------------------------------------
  // The document is derived once the canvas is quiet and a drag has ended, not on every keystroke or drag step:
  // with a thousand nodes, deriving and serialising it costs more than a frame.
  const dragging = nodes.some((n) => n.dragging);
  const validated = useRef(null);
  useEffect(() => {
    if (!agents.length || dragging) return undefined;
    const t = setTimeout(() => {
      const doc = documentNow();
      const key = JSON.stringify(doc);
      if (key === validated.current) return;
      validated.current = key;
      api.validate(doc).then((r) => setProblems(r.problems)).catch((err) => say(err.message, "error"));
    }, 300);
    return () => clearTimeout(t);
  }, [meta, nodes, edges, agents.length, dragging]);

  // --- editing --------------------------------------------------------------------------------
  const addNode = useCallback((agentId, position) => {
    const agent = agentMap[agentId];
    if (!agent) return;
    record();
    const taken = new Set(state.current.nodes.map((n) => n.id));
    const id = freshId(agentId.split(".").pop(), taken);
    const at = position || flow.screenToFlowPosition({ x: window.innerWidth / 2, y: window.innerHeight / 2 });
    setNodes((ns) => [...ns.map((n) => ({ ...n, selected: false })),
      { id, type: "agent", position: at, selected: true, data: { agent: agentId, params: {} } }]);
  }, [agentMap, flow, record, setNodes]);

  const addAtCentre = useCallback((agentId) => addNode(agentId), [addNode]);
  const onBeforeDelete = useCallback(async () => { record(); return true; }, [record]);
  const onDrop = useCallback((e) => {
    e.preventDefault();
    const agentId = e.dataTransfer.getData(DRAG_TYPE);
    if (agentId) addNode(agentId, flow.screenToFlowPosition({ x: e.clientX, y: e.clientY }));
  }, [addNode, flow]);

  const refusal = useCallback((c) => {
    const src = state.current.nodes.find((n) => n.id === c.source);
    const tgt = state.current.nodes.find((n) => n.id === c.target);
    if (!src || !tgt || !c.sourceHandle || !c.targetHandle) return "connect an output to an input";
    if (c.source === c.target) return "a node cannot feed itself";
    const field = c.targetHandle.slice(3);
    if (state.current.edges.some((e) => e.target === c.target && e.targetHandle === c.targetHandle))
      return `input ${c.target}.${field} is already connected`;
    return connectionProblem(agentMap[src.data.agent], c.sourceHandle.slice(4), agentMap[tgt.data.agent], field);
  }, [agentMap]);

  const isValidConnection = useCallback((c) => refusal(c) === null, [refusal]);
  const onConnect = useCallback((c) => {
    if (refusal(c) !== null) return;
    record();
    setEdges((es) => addEdge(edgeOf(c.source, c.sourceHandle.slice(4), c.target, c.targetHandle.slice(3)), es));
  }, [refusal, record, setEdges]);
  const onConnectEnd = useCallback((_, cs) => {
    if (!cs.toHandle || cs.isValid) return;
    const from = cs.fromHandle, to = cs.toHandle;
    const [src, tgt] = from.type === "source" ? [from, to] : [to, from];
    const why = refusal({ source: src.nodeId, sourceHandle: src.id, target: tgt.nodeId, targetHandle: tgt.id });
    if (why) say(`Connection refused: ${why}`, "error");
  }, [refusal, say]);

  const updateNodeData = useCallback((id, patch) => {
    record();
    setNodes((ns) => ns.map((n) => (n.id === id ? { ...n, data: { ...n.data, ...patch } } : n)));
  }, [record, setNodes]);

  const copy = () => {
    const s = state.current;
    const picked = s.nodes.filter((n) => n.selected);
    const ids = new Set(picked.map((n) => n.id));
    clipboard.current = { nodes: picked, edges: s.edges.filter((e) => ids.has(e.source) && ids.has(e.target)) };
    if (picked.length) say(`Copied ${picked.length} node${picked.length > 1 ? "s" : ""}`);
  };
  const paste = () => {
    const clip = clipboard.current;
    if (!clip?.nodes.length) return;
    record();
    const taken = new Set(state.current.nodes.map((n) => n.id));
    const rename = {};
    for (const n of clip.nodes) { rename[n.id] = freshId(n.id.replace(/_\d+$/, ""), taken); taken.add(rename[n.id]); }
    setNodes((ns) => [...ns.map((n) => ({ ...n, selected: false })), ...clip.nodes.map((n) => ({
      ...n, id: rename[n.id], selected: true, position: { x: n.position.x + 40, y: n.position.y + 40 },
      data: structuredClone(n.data) }))]);
    setEdges((es) => [...es, ...clip.edges.map((e) =>
      edgeOf(rename[e.source], e.sourceHandle.slice(4), rename[e.target], e.targetHandle.slice(3)))]);
  };
  const layout = () => {
    record();
    setNodes((ns) => autoLayout(ns, state.current.edges));
    requestAnimationFrame(() => flow.fitView({ duration: 200 }));
  };

  // --- files ----------------------------------------------------------------------------------
  const save = async () => {
    const doc = documentNow();
    try {
      const wf = saved ? await api.update(saved.id, doc) : await api.create(doc);
      setSaved({ id: wf.id, version: wf.version });
      setSavedKey(JSON.stringify(doc));
      history.replaceState(null, "", `#w=${wf.id}`);
      say(`Saved ${wf.name} (version ${wf.version})`);
    } catch (err) { say(`Not saved: ${err.message}`, "error"); }
  };
  const duplicate = async () => {
    try {
      const wf = await api.create({ ...documentNow(), name: `${meta.name || "workflow"} copy` });
      load(wf.document, { id: wf.id, version: wf.version });
      say(`Duplicated as ${wf.name}`);
    } catch (err) { say(`Not duplicated: ${err.message}`, "error"); }
  };
  const remove = async () => {
    if (!saved || !confirm(`Delete workflow “${meta.name}”?`)) return;
    try { await api.remove(saved.id); load(EMPTY_META); say("Deleted"); }
    catch (err) { say(err.message, "error"); }
  };
  const exportAs = (fmt) => {
    const doc = documentNow();
    const text = fmt === "json" ? `${JSON.stringify(doc, null, 2)}\n` : YAML.stringify(doc);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: fmt === "json" ? "application/json" : "application/yaml" }));
    a.download = `${(meta.name || "workflow").replace(/[^A-Za-z0-9_-]+/g, "_")}.${fmt === "json" ? "json" : "yaml"}`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  };
  const importFile = async (file) => {
    try {
      const doc = YAML.parse(await file.text());
      if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new Error("a workflow document must be a mapping with nodes and edges");
      load(doc);
      say(`Imported ${file.name}`);
    } catch (err) { say(`Not imported: ${err.message}`, "error"); }
  };

  // --- runs -----------------------------------------------------------------------------------
  const watch = useCallback((id) => {
    stopWatch.current?.();
    setLogs([]);
    stopWatch.current = watchRun(id, setRunView, (line) => setLogs((ls) => [...ls.slice(-(LOG_LIMIT - 1)), line]),
                                 (err) => err && say(err.message, "error"));
  }, [say]);
  const startRun = async (inputs) => {
    setDialog(null);
    try {
      // an unchanged saved workflow runs as itself, so its runs show in its history
      const doc = documentNow();
      const started = saved && savedKey === JSON.stringify(doc) ? await api.runSaved(saved.id, inputs)
        : await api.runDocument(doc, inputs);
      setRunView({ id: started.id, state: "pending", nodes: {}, inputs });
      watch(started.id);
    } catch (err) {
      say(`Not started: ${err.message}`, "error");
      if (err.body?.problems) setProblems(err.body.problems);
    }
  };
  const reopenRun = async (id) => {
    setDialog(null);
    try {
      const view = await api.run(id);
      setRunView(view);
      if (!FINISHED.includes(view.state)) watch(id);
    } catch (err) { say(err.message, "error"); }
  };
  const rerunFrom = async (nodeId) => {
    try {
      const started = await api.rerun(runView.id, nodeId);
      setRunView((v) => ({ ...v, id: started.id, state: "pending" }));
      watch(started.id);
    } catch (err) { say(`Not re-run: ${err.message}`, "error"); }
  };
  const answer = async (approved, value, comment) => {
    try { await api.resume(runView.id, { approved, value, comment }); say(approved ? "Approved" : "Rejected"); }
    catch (err) { say(err.message, "error"); }
  };
  const cancelRun = async (id) => {
    setDialog(null);
    try {
      const { state: now } = await api.cancel(id);
      // The stream brings the settled state; until then the answer shows (and a run being stopped asks for no
      // approval), unless the stream got there first.
      setRunView((v) => (v?.id === id && !FINISHED.includes(v.state) ? { ...v, state: now, waiting_for: [] } : v));
      say(now === "cancelled" ? "Run cancelled" : "Cancelling the run");
    } catch (err) { say(`Not cancelled: ${err.message}`, "error"); }
  };
  useEffect(() => () => stopWatch.current?.(), []);
  useEffect(() => {
    if (!toast) return undefined;
    const t = setTimeout(() => setToast(null), TOAST_SECONDS * 1000);
    return () => clearTimeout(t);
  }, [toast]);

  // --- keyboard conventions of node editors -----------------------------------------------------
  useEffect(() => {
    const onKey = (e) => {
      if (typing(document.activeElement)) return;
      const mod = e.ctrlKey || e.metaKey;
      const k = e.key.toLowerCase();
      if (mod && k === "z" && !e.shiftKey) { e.preventDefault(); restore(undo, redo); }
      else if (mod && (k === "y" || (k === "z" && e.shiftKey))) { e.preventDefault(); restore(redo, undo); }
      else if (mod && k === "c") copy();
      else if (mod && k === "v") paste();
      else if (mod && k === "s") { e.preventDefault(); save(); }
      else if (!mod && k === "1") flow.fitView({ duration: 200 });
      else if (!mod && k === "l") layout();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  });

  // Marks the first meaningful paint (palette and every node of the opened workflow drawn) for the load benchmark.
  const measured = useNodesInitialized();
  useEffect(() => {
    if (agents.length && !opening && (measured || nodes.length === 0) && !window.__editorReady) {
      requestAnimationFrame(() => { window.__editorReady = performance.now(); });
    }
  }, [agents.length, opening, measured, nodes.length]);

  const selected = nodes.filter((n) => n.selected);
  const picked = selected.length === 1 ? selected[0] : null;
  // The inspector reads the node's id and data: a new position on each drag step is no change to it.
  const focus = useMemo(() => picked && { id: picked.id, data: picked.data }, [picked?.id, picked?.data]);
  const focusRun = focus ? runView?.nodes?.[focus.id] : undefined;
  const onParams = useCallback((params) => updateNodeData(focus.id, { params }), [focus, updateNodeData]);
  const onLabel = useCallback((label) => updateNodeData(focus.id, { label: label || undefined }), [focus, updateNodeData]);
  const onOptions = useCallback((options) => updateNodeData(focus.id, { options }), [focus, updateNodeData]);
  const onAddPort = useCallback((port) => updateNodeData(focus.id, { ports: [...(focus.data.ports || []), port] }),
                                [focus, updateNodeData]);
  const onRerun = useCallback(() => rerunFrom(focus.id), [focus, runView]);
  const docProblems = useMemo(() => {
    if (!problems.length) return NONE;
    const ids = new Set(nodes.map((n) => n.id));
    return problems.filter((p) => !p.node || !ids.has(p.node));
  }, [problems, nodes]);

  return (
    <BuilderContext.Provider value={store}>
      <div className="app">
        <header className="toolbar">
          <strong className="brand">Cxmpute</strong>
          <input className="wf-name" aria-label="Workflow name" value={meta.name || ""}
                 onChange={(e) => setMeta((m) => ({ ...m, name: e.target.value }))} />
          {saved && <span className="muted" data-testid="saved-version">v{saved.version}</span>}
          <button onClick={() => load(EMPTY_META)}>New</button>
          <button onClick={() => setDialog("files")}>Open</button>
          <button onClick={save} data-testid="save">Save</button>
          <button onClick={duplicate}>Duplicate</button>
          <button onClick={remove} disabled={!saved}>Delete</button>
          <button onClick={() => setDialog("templates")}>Templates</button>
          <label className="button">Import<input type="file" accept=".json,.yaml,.yml" hidden data-testid="import"
                 onChange={(e) => { if (e.target.files[0]) importFile(e.target.files[0]); e.target.value = ""; }} /></label>
          <button onClick={() => exportAs("json")}>Export JSON</button>
          <button onClick={() => exportAs("yaml")}>Export YAML</button>
          <span className="sep" />
          <button onClick={() => restore(undo, redo)} title="Ctrl+Z">Undo</button>
          <button onClick={() => restore(redo, undo)} title="Ctrl+Shift+Z">Redo</button>
          <button onClick={layout} title="L">Auto-layout</button>
          <button onClick={() => flow.fitView({ duration: 200 })} title="1">Fit</button>
          <span className="sep" />
          <button className="primary" onClick={() => setDialog("run")} data-testid="run">Run</button>
          <button onClick={() => setDialog("history")}>History</button>
          <span className="owner muted" title="Runs and workflows belong to this account" data-testid="owner">{owner}</span>
          {owner === "local"
            ? <button onClick={() => signIn().then((a) => { setOwner(a); load(EMPTY_META); say(`Signed in as ${a}`); })
                                            .catch((err) => say(`Not signed in: ${err.message}`, "error"))}>Sign in with wallet</button>
            : <button onClick={() => signOut().finally(() => { setOwner("local"); load(EMPTY_META); })}>Sign out</button>}
        </header>
        <Palette agents={agents} onAdd={addAtCentre} />
        <main className="canvas" onDragOver={(e) => { e.preventDefault(); e.dataTransfer.dropEffect = "move"; }} onDrop={onDrop}>
          <ReactFlow nodes={nodes} edges={edges} nodeTypes={nodeTypes} onlyRenderVisibleElements
                     onNodesChange={onNodesChange} onEdgesChange={onEdgesChange}
                     onConnect={onConnect} onConnectEnd={onConnectEnd} isValidConnection={isValidConnection}
                     onBeforeDelete={onBeforeDelete} onNodeDragStart={record}
                     deleteKeyCode={DELETE_KEYS} multiSelectionKeyCode={MULTI_SELECT_KEYS}
                     defaultViewport={DEFAULT_VIEWPORT} minZoom={0.05}>
            <Background />
            <MiniMap pannable zoomable />
            <Controls />
          </ReactFlow>
          {toast && <div className={`toast toast-${toast.kind}`} role="status" key={toast.at} data-testid="toast"
                         onClick={() => setToast(null)}>{toast.text}</div>}
        </main>
        <aside className="side">
          <Inspector node={focus} agent={focus && agentMap[focus.data.agent]} edges={edges} problems={problems}
                     run={focus && focusRun} canRerun={Boolean(focus && runView?.id && focusRun)}
                     onParams={onParams} onLabel={onLabel} optionsSchema={optionsSchema} onOptions={onOptions}
                     onAddPort={onAddPort} onRerun={onRerun} />
          {docProblems.length > 0 && (
            <ul className="doc-problems">{docProblems.map((p, i) => <li key={i} className="problem">{p.message}</li>)}</ul>
          )}
          <RunPanel view={runView} logs={logs} nodes={nodes} edges={edges} onAnswer={answer} onCancel={() => setDialog("cancel")} />
        </aside>
        {dialog === "files" && <FilesDialog onOpen={(id) => { setDialog(null); openSaved(id); }} onClose={() => setDialog(null)} />}
        {dialog === "templates" && <TemplatesDialog onPick={(doc) => { setDialog(null); load(doc); }} onClose={() => setDialog(null)} />}
        {dialog === "run" && <RunDialog document={documentNow()} onRun={startRun} onClose={() => setDialog(null)} />}
        {dialog === "cancel" && runView && (
          <ConfirmDialog title="Cancel run" confirm="Cancel run" dismiss="Keep running"
                         message={`Stop run ${runView.id}? A cancelled run cannot be resumed, only run again.`}
                         onConfirm={() => cancelRun(runView.id)} onClose={() => setDialog(null)} />
        )}
        {dialog === "history" && <FilesDialog runs workflowId={saved?.id} onOpen={reopenRun} onClose={() => setDialog(null)} />}
      </div>
    </BuilderContext.Provider>
  );
}

createRoot(document.getElementById("root")).render(
  <StrictMode><ReactFlowProvider><Editor /></ReactFlowProvider></StrictMode>,
);
