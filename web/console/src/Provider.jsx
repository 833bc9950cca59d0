import { useMemo, useState } from "react";
import { eth, get, post, request, short, when } from "./client.js";
import Chart from "./Chart.jsx";
import { Failed, Field, NeedsSignIn, useLoad, useOutcome } from "./common.jsx";

const KINDS = ["vm", "container", "function", "inference", "agent"];

export default function Provider({ address }) {
  const me = useLoad(() => get("/v1/providers/me").catch((e) => (e.status === 404 ? null : Promise.reject(e))), []);
  if (!address) return <section className="page"><h1>Provider</h1><NeedsSignIn what="your provider record" /></section>;
  if (!me.loaded) return <section className="page"><h1>Provider</h1><p className="hint">Loading…</p></section>;
  return (
    <section className="page provider">
      <h1>Provider</h1>
      <Failed error={me.error} />
      {me.data ? <Record p={me.data} /> : <p className="hint" data-testid="not-provider">This wallet is not a registered provider: run <code>cxmpute provider start</code>.</p>}
      {me.data && <><Provisions /><Leases address={address} /><Earnings /></>}
    </section>
  );
}

function Record({ p }) {
  const balance = useLoad(() => get("/v1/account/balance"), [], 10_000);
  return (
    <div className="card">
      <dl className="balance">
        <dt>Name</dt><dd>{p.name} ({p.region})</dd>
        <dt>Stake</dt><dd data-testid="stake">{balance.data ? eth(balance.data.stake_gwei) : ""}</dd>
        <dt>Reputation</dt><dd data-testid="reputation">{p.reputation.toFixed(3)}</dd>
        <dt>Leases</dt><dd>{p.leases_completed} completed, {p.leases_failed} failed</dd>
        <dt>Last heartbeat</dt><dd>{p.last_heartbeat_ts ? new Date(p.last_heartbeat_ts * 1000).toLocaleString() : "never"}</dd>
      </dl>
    </div>
  );
}

function Provisions() {
  const list = useLoad(() => get("/v1/provisions"), [], 10_000);
  const [form, setForm] = useState({ kind: "container", cpu: "4", memory_mb: "8192", gpu_count: "0", gpu_model: "", price_gwei: "100", region: "local", software: "" });
  const [run, outcome] = useOutcome();
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });
  const publish = run(async () => {
    const names = form.software.split(",").map((s) => s.trim()).filter(Boolean);
    const served = ["inference", "function", "agent"].includes(form.kind);
    const p = await post("/v1/provisions", {
      kind: form.kind, price_gwei: Number(form.price_gwei), region: form.region,
      resources: { cpu: Number(form.cpu), memory_mb: Number(form.memory_mb), gpu_count: Number(form.gpu_count), gpu_model: form.gpu_model },
      models: served ? names : [], images: served ? [] : names,
    });
    list.reload();
    return `Published ${p.kind} provision ${short(p.id)}`;
  });
  const patch = (id, body, what) => run(async () => {
    await request("PATCH", `/v1/provisions/${id}`, body);
    list.reload();
    return what;
  });
  return (
    <div className="card">
      <h2>Provisions</h2>
      <Failed error={list.error} />
      <form className="filters" onSubmit={publish}>
        <Field label="Provision kind"><select aria-label="Provision kind" value={form.kind} onChange={set("kind")}>{KINDS.map((k) => <option key={k}>{k}</option>)}</select></Field>
        <Field label="vCPU"><input aria-label="Provision vCPU" type="number" value={form.cpu} onChange={set("cpu")} /></Field>
        <Field label="Memory (MiB)"><input aria-label="Provision memory" type="number" value={form.memory_mb} onChange={set("memory_mb")} /></Field>
        <Field label="GPUs"><input aria-label="Provision GPUs" type="number" value={form.gpu_count} onChange={set("gpu_count")} /></Field>
        <Field label="GPU model"><input aria-label="Provision GPU model" value={form.gpu_model} onChange={set("gpu_model")} /></Field>
        <Field label="Price (gwei/CU·s)"><input aria-label="Provision price" type="number" value={form.price_gwei} onChange={set("price_gwei")} /></Field>
        <Field label="Region"><input aria-label="Provision region" value={form.region} onChange={set("region")} /></Field>
        <Field label="Models or images (comma-separated)"><input aria-label="Provision software" value={form.software} onChange={set("software")} /></Field>
        <div className="actions"><button type="submit">Publish</button></div>
      </form>
      {outcome}
      <table data-testid="my-provisions">
        <thead><tr><th>Kind</th><th>Resources</th><th>Free</th><th>Price</th><th>Status</th><th /></tr></thead>
        <tbody>
          {(list.data ?? []).map((p) => <ProvisionRow key={p.id} p={p} patch={patch} />)}
        </tbody>
      </table>
    </div>
  );
}

function ProvisionRow({ p, patch }) {
  const [price, setPrice] = useState(String(p.price_gwei));
  return (
    <tr data-provision={p.id} data-status={p.status}>
      <td>{p.kind}</td>
      <td>{p.resources.cpu} vCPU, {p.resources.memory_mb} MiB{p.resources.gpu_count ? `, ${p.resources.gpu_count}× ${p.resources.gpu_model}` : ""}</td>
      <td>{p.free.cpu} vCPU</td>
      <td>
        <input aria-label="New price" type="number" value={price} onChange={(e) => setPrice(e.target.value)} />
        <button onClick={patch(p.id, { price_gwei: Number(price) }, `Price set to ${price} gwei`)}>Set price</button>
      </td>
      <td>{p.status}</td>
      <td>
        {p.status === "active" && <button onClick={patch(p.id, { status: "paused" }, "Paused")}>Pause</button>}
        {p.status === "paused" && <button onClick={patch(p.id, { status: "active" }, "Resumed")}>Resume</button>}
      </td>
    </tr>
  );
}

function Leases({ address }) {
  const leases = useLoad(() => get("/v1/leases?status=active"), [], 5_000);
  const jobs = useLoad(() => get("/v1/work?status=running&limit=500").catch(() => []), [], 5_000);
  const mine = (leases.data ?? []).filter((l) => l.provider === address);
  const running = (jobs.data ?? []).filter((j) => j.provider === address);
  return (
    <div className="card">
      <h2>Active leases and jobs</h2>
      <Failed error={leases.error} />
      <table data-testid="provider-leases">
        <thead><tr><th>Lease</th><th>User</th><th>Kind</th><th>Units</th><th>Price</th><th>Escrow left</th><th>Paid</th><th>Expires</th></tr></thead>
        <tbody>
          {mine.map((l) => (
            <tr key={l.id} data-lease={l.id}>
              <td title={l.id}>{short(l.id)}</td><td title={l.user}>{short(l.user)}</td><td>{l.kind}</td>
              <td>{l.compute_units}</td><td>{l.price_gwei}</td><td>{eth(l.escrow_left_gwei)}</td><td>{eth(l.paid_gwei)}</td><td>{when(l.expires_at)}</td>
            </tr>
          ))}
          {running.map((j) => (
            <tr key={j.id} data-job={j.id}><td title={j.id}>job {short(j.id)}</td><td title={j.owner}>{short(j.owner)}</td><td>{j.kind}</td><td colSpan="5">{j.status}</td></tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Earnings() {
  const history = useLoad(() => get("/v1/account/history?limit=1000"), [], 15_000);
  const items = history.data ?? [];
  // The ledger comes newest first; the chart is the earnings account's running balance, oldest first.
  // It starts at zero just before the first entry and runs on to now, so one payment still draws a line.
  const points = useMemo(() => {
    let total = 0;
    const steps = items.filter((h) => h.account === "earnings").reverse()
      .map((h) => [Date.parse(h.created_at) / 1000, (total += h.amount_gwei)]);
    return steps.length ? [[steps[0][0] - 1, 0], ...steps, [Date.now() / 1000, total]] : [];
  }, [items]);
  const slashes = items.filter((h) => h.kind === "slash");
  return (
    <div className="card">
      <h2>Earnings (gwei)</h2>
      <Failed error={history.error} />
      <Chart points={points} label="earnings" testId="earnings-chart" />
      <h2>Slashes</h2>
      {slashes.length === 0
        ? <p className="hint" data-testid="slashes">No slashes.</p>
        : (
          <table data-testid="slashes">
            <thead><tr><th>When</th><th>Amount</th><th>Reason</th></tr></thead>
            <tbody>{slashes.map((s) => <tr key={`${s.tx_id}:${s.account}`}><td>{when(s.created_at)}</td><td>{eth(s.amount_gwei)}</td><td>{s.memo}</td></tr>)}</tbody>
          </table>
        )}
    </div>
  );
}
