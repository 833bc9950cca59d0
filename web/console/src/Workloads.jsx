import { all, eth, get, short, when } from "./client.js";
import { Failed, NeedsSignIn, useLoad } from "./common.jsx";

// Each workload's cost so far: VMs report it, training jobs sum their rank jobs, functions their invocations,
// and services the leases their replicas hold (leases are read only for a signed-in wallet).
export default function Workloads({ address }) {
  return (
    <section className="page workloads">
      <h1>Workloads</h1>
      <Functions />
      <Services signedIn={!!address} />
      <Vms signedIn={!!address} />
      <Training />
    </section>
  );
}

async function functions() {
  const list = await get("/v1/functions");
  return Promise.all(list.map(async (f) => {
    const calls = await all(`/v1/functions/${encodeURIComponent(f.name)}/invocations`, 500, 5_000);
    return { ...f, calls: calls.length, cost: calls.reduce((s, c) => s + c.cost_gwei, 0), last: calls[0] };
  }));
}

function Functions() {
  const list = useLoad(functions, [], 15_000);
  return (
    <div className="card">
      <h2>Functions</h2>
      <Failed error={list.error} />
      <table data-testid="functions">
        <thead><tr><th>Name</th><th>Version</th><th>Deployed</th><th>Invocations</th><th>Last</th><th>Cost so far</th></tr></thead>
        <tbody>
          {(list.data ?? []).map((f) => (
            <tr key={f.name} data-workload={f.name}>
              <td>{f.name}</td><td>{f.version}</td><td>{when(f.created_at)}</td><td>{f.calls}</td>
              <td>{f.last ? `${f.last.status} on ${f.last.where === "local" ? "the platform" : short(f.last.where)}` : ""}</td>
              <td className="num">{eth(f.cost)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

async function services(signedIn) {
  const [list, leases] = await Promise.all([get("/v1/services"), signedIn ? get("/v1/leases") : null]);
  const paid = new Map((leases ?? []).map((l) => [l.id, l.paid_gwei]));
  return list.map((s) => ({
    ...s,
    cost: leases ? s.replicas.reduce((sum, r) => sum + (paid.get(r.lease_id) ?? 0), 0) : null,
  }));
}

function Services({ signedIn }) {
  const list = useLoad(() => services(signedIn), [signedIn], 15_000);
  return (
    <div className="card">
      <h2>Services</h2>
      <Failed error={list.error} />
      <table data-testid="services">
        <thead><tr><th>Name</th><th>Status</th><th>Replicas live</th><th>Created</th><th>Cost so far</th></tr></thead>
        <tbody>
          {(list.data ?? []).map((s) => (
            <tr key={s.id} data-workload={s.name}>
              <td>{s.name}</td><td>{s.status}</td><td>{s.replicas.filter((r) => r.live).length} / {s.replicas.length}</td>
              <td>{when(s.created_at)}</td><td className="num">{s.cost === null ? "sign in to see" : eth(s.cost)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

// Virtual machines are rented by a wallet: the local owner has none.
function Vms({ signedIn }) {
  const list = useLoad(() => (signedIn ? get("/v1/vms") : Promise.resolve([])), [signedIn], 15_000);
  return (
    <div className="card">
      <h2>Virtual machines</h2>
      {!signedIn && <NeedsSignIn what="your virtual machines" />}
      <Failed error={list.error} />
      <table data-testid="vms">
        <thead><tr><th>Name</th><th>Status</th><th>Size</th><th>Provider</th><th>Billed</th><th>Ends</th><th>Cost so far</th></tr></thead>
        <tbody>
          {(list.data ?? []).map((v) => (
            <tr key={v.id} data-workload={v.name}>
              <td>{v.name}</td><td>{v.status}</td><td>{v.vcpus} vCPU, {v.memory_mb} MiB</td><td title={v.provider}>{short(v.provider)}</td>
              <td>{v.billed_s} s</td><td>{when(v.ends_at)}</td><td className="num">{eth(v.paid_gwei)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

async function training() {
  const list = await get("/v1/training/jobs?limit=100");
  return Promise.all(list.map(async (j) => {
    const detail = await get(`/v1/training/jobs/${encodeURIComponent(j.id)}?losses_steps=0`);
    return { ...j, cost: detail.ranks.reduce((s, r) => s + r.cost_gwei, 0) };
  }));
}

function Training() {
  const list = useLoad(training, [], 15_000);
  return (
    <div className="card">
      <h2>Training jobs</h2>
      <Failed error={list.error} />
      <table data-testid="training">
        <thead><tr><th>Job</th><th>State</th><th>Step</th><th>Final loss</th><th>Created</th><th>Cost so far</th></tr></thead>
        <tbody>
          {(list.data ?? []).map((j) => (
            <tr key={j.id} data-workload={j.id}>
              <td title={j.id}>{short(j.id)}</td><td>{j.state}</td><td>{j.step}</td><td>{j.final_loss ?? ""}</td>
              <td>{when(j.created_at)}</td><td className="num">{eth(j.cost)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
