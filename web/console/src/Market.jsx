import { memo, useMemo, useState } from "react";
import { all, eth, post, short } from "./client.js";
import { Failed, Field, LongTable, useLoad, useOutcome } from "./common.jsx";

const KINDS = ["vm", "container", "function", "inference", "agent"];
const SORTS = {
  price: (a, b) => a.price_gwei - b.price_gwei,
  "-price": (a, b) => b.price_gwei - a.price_gwei,
  cpu: (a, b) => b.free.cpu - a.free.cpu,
  memory: (a, b) => b.free.memory_mb - a.free.memory_mb,
  gpu: (a, b) => b.free.gpu_count - a.free.gpu_count,
};

const num = (v) => (v === "" || v === undefined ? null : Number(v));

export function matches(p, f) {
  const free = p.free;
  if (num(f.cpu) !== null && free.cpu < num(f.cpu)) return false;
  if (num(f.memoryGb) !== null && free.memory_mb < num(f.memoryGb) * 1024) return false;
  if (num(f.gpus) !== null && free.gpu_count < num(f.gpus)) return false;
  if (f.gpuModel && !p.resources.gpu_model.toLowerCase().includes(f.gpuModel.toLowerCase())) return false;
  if (f.region && p.region !== f.region) return false;
  if (f.software) {
    const want = f.software.toLowerCase();
    // a vm or container provision with no images listed runs any image
    const anyImage = p.images.length === 0 && (p.kind === "vm" || p.kind === "container");
    if (!anyImage && ![...p.models, ...p.images].some((s) => s.toLowerCase().includes(want))) return false;
  }
  if (num(f.priceMin) !== null && p.price_gwei < num(f.priceMin)) return false;
  if (num(f.priceMax) !== null && p.price_gwei > num(f.priceMax)) return false;
  return true;
}

export default function Market({ address }) {
  const [kind, setKind] = useState("");
  const [filters, setFilters] = useState({ cpu: "", memoryGb: "", gpus: "", gpuModel: "", region: "", software: "", priceMin: "", priceMax: "" });
  const [sort, setSort] = useState("price");
  const [picked, setPicked] = useState(null);
  const book = useLoad(
    (shown) => all(`/v1/market/provisions?status=active${kind ? `&kind=${kind}` : ""}`, 500, 20_000, { first: shown }),
    [kind],
    15_000,
  );
  const provisions = book.data ?? [];
  const regions = useMemo(() => [...new Set(provisions.map((p) => p.region))].sort(), [provisions]);
  const shown = useMemo(
    () => provisions.filter((p) => matches(p, filters)).sort(SORTS[sort]),
    [provisions, filters, sort],
  );
  const set = (key) => (e) => setFilters({ ...filters, [key]: e.target.value });
  return (
    <section className="page market">
      <h1>Market</h1>
      <div className="filters">
        <Field label="Kind">
          <select aria-label="Kind" value={kind} onChange={(e) => setKind(e.target.value)}>
            <option value="">any</option>
            {KINDS.map((k) => <option key={k}>{k}</option>)}
          </select>
        </Field>
        <Field label="Min vCPU"><input aria-label="Min vCPU" type="number" min="0" value={filters.cpu} onChange={set("cpu")} /></Field>
        <Field label="Min memory (GiB)"><input aria-label="Min memory (GiB)" type="number" min="0" value={filters.memoryGb} onChange={set("memoryGb")} /></Field>
        <Field label="Min GPUs"><input aria-label="Min GPUs" type="number" min="0" value={filters.gpus} onChange={set("gpus")} /></Field>
        <Field label="GPU model"><input aria-label="GPU model" value={filters.gpuModel} onChange={set("gpuModel")} /></Field>
        <Field label="Region">
          <select aria-label="Region" value={filters.region} onChange={set("region")}>
            <option value="">any</option>
            {regions.map((r) => <option key={r}>{r}</option>)}
          </select>
        </Field>
        <Field label="Model or image"><input aria-label="Model or image" value={filters.software} onChange={set("software")} /></Field>
        <Field label="Price from (gwei)"><input aria-label="Price from" type="number" min="0" value={filters.priceMin} onChange={set("priceMin")} /></Field>
        <Field label="Price to (gwei)"><input aria-label="Price to" type="number" min="0" value={filters.priceMax} onChange={set("priceMax")} /></Field>
        <Field label="Sort">
          <select aria-label="Sort" value={sort} onChange={(e) => setSort(e.target.value)}>
            <option value="price">cheapest first</option>
            <option value="-price">dearest first</option>
            <option value="cpu">most free vCPU</option>
            <option value="memory">most free memory</option>
            <option value="gpu">most free GPUs</option>
          </select>
        </Field>
      </div>
      <Failed error={book.error} />
      <p className="hint" data-testid="provision-count">
        {shown.length} of {provisions.length} provisions{book.data && !book.loaded ? ", more loading" : ""}
      </p>
      <LongTable testid="provisions" label="Provisions" items={shown} row={ProvisionRow} rowProps={{ choose: setPicked }} head={HEAD} />
      <RequestForm key={picked?.id ?? "any"} picked={picked} signedIn={!!address} onRented={book.reload} />
    </section>
  );
}

const HEAD = ["Kind", "Provider", "Region", "Free vCPU", "Free memory", "GPU", "Models / images", "Price (gwei/CU·s)", ""]
  .map((h, i) => <th key={i}>{h}</th>);

// One provision's row; memoised, so only rows that come into view are drawn anew.
const ProvisionRow = memo(function ProvisionRow({ item: p, index, choose }) {
  return (
    <tr data-provision={p.id} aria-rowindex={index + 2}>
      <td>{p.kind}</td>
      <td title={p.provider}>{short(p.provider)}</td>
      <td>{p.region}</td>
      <td>{p.free.cpu} / {p.resources.cpu}</td>
      <td>{(p.free.memory_mb / 1024).toFixed(1)} GiB</td>
      <td>{p.resources.gpu_count ? `${p.free.gpu_count}× ${p.resources.gpu_model || "GPU"}` : "—"}</td>
      <td>{[...p.models, ...p.images].join(", ") || "any image"}</td>
      <td className="num">{p.price_gwei}</td>
      <td><button onClick={() => choose(p)}>Choose</button></td>
    </tr>
  );
});

function RequestForm({ picked, signedIn, onRented }) {
  const [form, setForm] = useState(() => ({
    kind: picked?.kind ?? "container",
    cpu: "1", memory_mb: "1024", gpu_count: "0", gpu_model: "",
    software: "", region: picked?.region ?? "",
    price_min_gwei: "0", price_max_gwei: String(picked?.price_gwei ?? 1000),
    term: "seconds", duration_s: "600", terms: "1",
  }));
  const [quote, setQuote] = useState(null);
  const [run, outcome] = useOutcome();
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });
  const body = () => {
    const soft = form.software.trim() || null;
    return {
      kind: form.kind,
      resources: { cpu: Number(form.cpu), memory_mb: Number(form.memory_mb), gpu_count: Number(form.gpu_count), gpu_model: form.gpu_model },
      model: ["inference", "function", "agent"].includes(form.kind) ? soft : null,
      image: ["inference", "function", "agent"].includes(form.kind) ? null : soft,
      region: form.region || null,
      price_min_gwei: Number(form.price_min_gwei), price_max_gwei: Number(form.price_max_gwei),
      term: form.term,
      duration_s: form.term === "seconds" ? Number(form.duration_s) : null,
      terms: Number(form.terms),
      provision_id: picked?.id ?? null,
    };
  };
  const askQuote = run(async () => {
    setQuote(await post("/v1/market/quote", body()));
    return "Quoted";
  });
  const rent = run(async () => {
    const lease = await post("/v1/market/requests", body());
    onRented();
    return `Leased ${lease.id} from ${lease.provider} at ${lease.price_gwei} gwei/CU·s (escrow ${eth(lease.escrow_gwei)})`;
  });
  return (
    <form className="request" onSubmit={askQuote}>
      <h2>{picked ? `Request on provision ${short(picked.id)}` : "Request"}</h2>
      <div className="filters">
        <Field label="Request kind">
          <select aria-label="Request kind" value={form.kind} onChange={set("kind")}>{KINDS.map((k) => <option key={k}>{k}</option>)}</select>
        </Field>
        <Field label="vCPU"><input aria-label="vCPU" type="number" value={form.cpu} onChange={set("cpu")} /></Field>
        <Field label="Memory (MiB)"><input aria-label="Memory (MiB)" type="number" value={form.memory_mb} onChange={set("memory_mb")} /></Field>
        <Field label="GPUs"><input aria-label="GPUs" type="number" value={form.gpu_count} onChange={set("gpu_count")} /></Field>
        <Field label="Request GPU model"><input aria-label="Request GPU model" value={form.gpu_model} onChange={set("gpu_model")} /></Field>
        <Field label="Model / image"><input aria-label="Model / image" value={form.software} onChange={set("software")} /></Field>
        <Field label="Request region"><input aria-label="Request region" value={form.region} onChange={set("region")} /></Field>
        <Field label="Min price"><input aria-label="Min price" type="number" value={form.price_min_gwei} onChange={set("price_min_gwei")} /></Field>
        <Field label="Max price"><input aria-label="Max price" type="number" value={form.price_max_gwei} onChange={set("price_max_gwei")} /></Field>
        <Field label="Term">
          <select aria-label="Term" value={form.term} onChange={set("term")}>
            <option value="seconds">per second</option><option value="hour">hourly rental</option><option value="month">monthly rental</option>
          </select>
        </Field>
        {form.term === "seconds"
          ? <Field label="Duration (s)"><input aria-label="Duration (s)" type="number" value={form.duration_s} onChange={set("duration_s")} /></Field>
          : <Field label="Terms"><input aria-label="Terms" type="number" value={form.terms} onChange={set("terms")} /></Field>}
      </div>
      <div className="actions">
        <button type="submit">Quote</button>
        <button type="button" onClick={rent} disabled={!signedIn} title={signedIn ? "" : "sign in to rent"}>Rent</button>
      </div>
      {quote && <QuoteView quote={quote} />}
      {outcome}
    </form>
  );
}

function QuoteView({ quote }) {
  if (quote.matched) {
    return (
      <p className="ok" data-testid="quote">
        Matches provision {short(quote.provision_id)} of {short(quote.provider)} at {quote.price_gwei} gwei/CU·s,
        {" "}{quote.compute_units} compute units{quote.estimated_cost_gwei != null ? `, about ${eth(quote.estimated_cost_gwei)}` : ""}.
      </p>
    );
  }
  const why = quote.no_match;
  return (
    <div className="error" data-testid="quote">
      <p>No match: {why.message}</p>
      <ul data-testid="why-no-match">
        {Object.entries(why.excluded).map(([reason, count]) => <li key={reason}>{reason}: {count} of {why.considered} excluded</li>)}
      </ul>
      {why.lowest_matching_price_gwei != null && <p>Lowest price that would match: {why.lowest_matching_price_gwei} gwei</p>}
    </div>
  );
}
