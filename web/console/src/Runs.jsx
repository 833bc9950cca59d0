import { memo, useEffect, useMemo, useState } from "react";
import { watchRun } from "../../builder/src/api.js";
import { all, duration, eth, short, when } from "./client.js";
import { Failed, Field, LongTable, useLoad } from "./common.jsx";

const STATES = ["pending", "running", "waiting", "completed", "failed", "cancelled", "unknown"];
const SINCE = { "": null, hour: 3600e3, day: 86400e3, week: 7 * 86400e3 };

export default function Runs({ args }) {
  return args[0] ? <RunDetail id={args[0]} /> : <RunList />;
}

export function keep(run, f, now) {
  if (f.state && run.state !== f.state) return false;
  if (f.since && now - Date.parse(run.created_at) > SINCE[f.since]) return false;
  if (f.name && !(run.workflow ?? "").toLowerCase().includes(f.name.toLowerCase())) return false;
  return true;
}

function RunList() {
  const runs = useLoad((shown) => all("/v1/runs", 500, 10_000, { first: shown }), [], 10_000);
  const [filters, setFilters] = useState({ state: "", since: "", name: "" });
  const set = (key) => (e) => setFilters({ ...filters, [key]: e.target.value });
  const shown = useMemo(() => {
    const now = Date.now();
    return (runs.data ?? []).filter((r) => keep(r, filters, now));
  }, [runs.data, filters]);
  return (
    <section className="page runs">
      <h1>Runs</h1>
      <div className="filters">
        <Field label="State">
          <select aria-label="State" value={filters.state} onChange={set("state")}>
            <option value="">any</option>{STATES.map((s) => <option key={s}>{s}</option>)}
          </select>
        </Field>
        <Field label="Started within">
          <select aria-label="Started within" value={filters.since} onChange={set("since")}>
            <option value="">any time</option><option value="hour">the last hour</option>
            <option value="day">the last day</option><option value="week">the last week</option>
          </select>
        </Field>
        <Field label="Workflow"><input aria-label="Workflow" value={filters.name} onChange={set("name")} /></Field>
      </div>
      <Failed error={runs.error} />
      <p className="hint" data-testid="run-count">
        {shown.length} of {(runs.data ?? []).length} runs{runs.data && !runs.loaded ? ", more loading" : ""}
      </p>
      <LongTable testid="runs" label="Runs" items={shown} row={RunRow} head={HEAD} />
    </section>
  );
}

const HEAD = ["Workflow", "State", "Submitted", "Duration", "Run", ""].map((h, i) => <th key={i}>{h}</th>);

// One run's row; memoised, so only rows that come into view are drawn anew.
const RunRow = memo(function RunRow({ item: r, index }) {
  return (
    <tr data-run={r.id} aria-rowindex={index + 2}>
      <td>{r.workflow ?? "(unnamed)"}</td>
      <td><span className={`state ${r.state}`}>{r.state}</span></td>
      <td>{when(r.created_at)}</td>
      <td>{duration(r.started_at, r.finished_at)}</td>
      <td><a href={`#/runs/${r.id}`}>{short(r.id)}</a></td>
      <td>{r.workflow_id && <a href={`/#w=${encodeURIComponent(r.workflow_id)}`}>open in builder</a>}</td>
    </tr>
  );
});

// The run followed over its event stream: one bar per node on a shared time axis, logs below.
function RunDetail({ id }) {
  const [view, setView] = useState(null);
  const [logs, setLogs] = useState([]);
  const [error, setError] = useState(null);
  useEffect(() => watchRun(id, setView, (line) => setLogs((l) => [...l, line]), (err) => err && setError(err)), [id]);
  const nodes = Object.values(view?.nodes ?? {});
  const cost = nodes.reduce((sum, n) => sum + (n.placement?.cost_gwei ?? 0), 0);
  return (
    <section className="page run">
      <p><a href="#/runs">← all runs</a></p>
      <h1>Run {short(id)} {view && <span className={`state ${view.state}`} data-testid="run-state">{view.state}</span>}</h1>
      <Failed error={error} />
      {view && (
        <>
          <dl className="balance">
            <dt>Workflow</dt><dd>{view.workflow ?? view.name}</dd>
            <dt>Duration</dt><dd data-testid="run-duration">{duration(view.started_at, view.finished_at)}</dd>
            <dt>Cost</dt><dd data-testid="run-cost">{eth(cost)}</dd>
            {view.error && <><dt>Error</dt><dd className="error">{view.error}</dd></>}
          </dl>
          <Timeline view={view} nodes={nodes} />
        </>
      )}
      <h2>Logs</h2>
      <pre className="logs" data-testid="logs">
        {logs.map((l, i) => <div key={i}>{[l.time && new Date(l.time).toLocaleTimeString(), l.node, l.message].filter(Boolean).join("  ")}</div>)}
      </pre>
    </section>
  );
}

function Timeline({ view, nodes }) {
  const starts = nodes.map((n) => n.started_at && Date.parse(n.started_at)).filter(Boolean);
  const t0 = view.started_at ? Date.parse(view.started_at) : Math.min(...starts, Date.now());
  const ends = nodes.map((n) => (n.finished_at ? Date.parse(n.finished_at) : n.started_at ? Date.now() : 0));
  const t1 = Math.max(view.finished_at ? Date.parse(view.finished_at) : Date.now(), ...ends, t0 + 1);
  const pct = (t) => `${(100 * (t - t0)) / (t1 - t0)}%`;
  return (
    <div className="timeline" data-testid="timeline">
      {nodes.map((n) => {
        const start = n.started_at ? Date.parse(n.started_at) : null;
        const end = n.finished_at ? Date.parse(n.finished_at) : Date.now();
        const where = n.placement
          ? `on ${n.placement.provider}, ${n.placement.seconds ?? "?"} s, ${eth(n.placement.cost_gwei ?? 0)}`
          : "on the platform, no charge";
        const title = `${n.node} (${n.agent ?? ""}): ${n.state}, ${duration(n.started_at, n.finished_at)}, ${where}`;
        return (
          <div className="lane" key={n.node} data-node={n.node} data-state={n.state}>
            <span className="label">{n.node}</span>
            <span className="track">
              {start && (
                <span className={`bar state ${n.state}`} title={title}
                  style={{ left: pct(start), width: `max(3px, calc(${pct(end)} - ${pct(start)}))` }} />
              )}
            </span>
          </div>
        );
      })}
    </div>
  );
}
