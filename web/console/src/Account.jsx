import { useState } from "react";
import { eth, get, post, request, short, when } from "./client.js";
import { Failed, Field, NeedsSignIn, useLoad, useOutcome } from "./common.jsx";
import { leaseSigner, verifyLease } from "./receipts.js";

const DEPOSIT = "0xd0e30db0"; // the vault's deposit() selector
const GWEI = 10n ** 9n;

export default function Account({ address }) {
  if (!address) return <section className="page"><h1>Account</h1><NeedsSignIn what="your balance and ledger" /></section>;
  return (
    <section className="page account">
      <h1>Account</h1>
      <Funds address={address} />
      <Ledger />
      <Keys />
    </section>
  );
}

function Funds({ address }) {
  const balance = useLoad(() => get("/v1/account/balance"), [], 10_000);
  const [amount, setAmount] = useState("0.01");
  const [source, setSource] = useState("user");
  const [run, outcome] = useOutcome();
  const gwei = () => {
    const [whole, frac = ""] = amount.trim().split(".");
    if (!/^\d+$/.test(whole || "0") || !/^\d*$/.test(frac) || frac.length > 9) throw new Error("amount: ETH with at most 9 decimals");
    return BigInt(whole || "0") * GWEI + BigInt(frac.padEnd(9, "0"));
  };
  // The deposit is a transaction the wallet sends to the vault; the platform credits it from the chain's receipt.
  const deposit = run(async () => {
    const wallet = window.ethereum;
    if (!wallet) throw new Error("no wallet in this browser (window.ethereum)");
    const chain = await get("/v1/account/chain");
    const value = `0x${(gwei() * GWEI).toString(16)}`;
    const tx = await wallet.request({ method: "eth_sendTransaction", params: [{ from: address, to: chain.vault_address, value, data: DEPOSIT }] });
    const credited = await post("/v1/account/deposits", { tx_hash: tx });
    balance.reload();
    return `Deposited ${eth(gwei())}; balance ${eth(credited.balance_gwei)}`;
  });
  const withdraw = run(async () => {
    const out = await post("/v1/account/withdrawals", { amount_gwei: Number(gwei()), source, idempotency_key: `console-${crypto.randomUUID()}` });
    balance.reload();
    return `Withdrew ${eth(out.amount_gwei ?? Number(gwei()))} to ${short(address)} on chain`;
  });
  const b = balance.data;
  return (
    <div className="card">
      <h2>Balance</h2>
      <Failed error={balance.error} />
      {b && (
        <dl className="balance">
          <dt>Spendable</dt><dd data-testid="balance-user">{eth(b.user_gwei)}</dd>
          <dt>Provider earnings</dt><dd data-testid="balance-earnings">{eth(b.earnings_gwei)}</dd>
          <dt>Stake</dt><dd data-testid="balance-stake">{eth(b.stake_gwei)}</dd>
        </dl>
      )}
      <form className="filters" onSubmit={deposit}>
        <Field label="Amount (ETH)"><input aria-label="Amount (ETH)" value={amount} onChange={(e) => setAmount(e.target.value)} /></Field>
        <Field label="Withdraw from">
          <select aria-label="Withdraw from" value={source} onChange={(e) => setSource(e.target.value)}>
            <option value="user">spendable balance</option><option value="earnings">earnings</option>
          </select>
        </Field>
        <div className="actions">
          <button type="submit">Deposit with wallet</button>
          <button type="button" onClick={withdraw}>Withdraw to wallet</button>
        </div>
      </form>
      {outcome}
    </div>
  );
}

function Ledger() {
  const history = useLoad(() => get("/v1/account/history?limit=500"), [], 10_000);
  const [checks, setChecks] = useState({});
  // Only lease receipts (escrow holds and rentals) carry everything their signed message needs.
  const check = async (item) => {
    try {
      const [lease, chain] = await Promise.all([get(`/v1/leases/${encodeURIComponent(item.reference)}`), get("/v1/account/chain")]);
      // A renewal re-signs the lease, so an older entry's signature is no longer the lease's to check.
      const verdict = lease.signature !== item.signature
        ? "cannot check: the lease was renewed after this entry"
        : verifyLease(lease, chain) ? `valid: signed by ${leaseSigner(lease, chain)}` : "INVALID: not signed by the platform";
      setChecks((c) => ({ ...c, [item.tx_id]: verdict }));
    } catch (e) {
      setChecks((c) => ({ ...c, [item.tx_id]: `cannot check: ${e.message}` }));
    }
  };
  return (
    <div className="card">
      <h2>Ledger</h2>
      <Failed error={history.error} />
      <table data-testid="ledger">
        <thead><tr><th>When</th><th>Kind</th><th>Account</th><th>Amount</th><th>Reference</th><th>Receipt</th></tr></thead>
        <tbody>
          {(history.data ?? []).map((h) => (
            <tr key={`${h.tx_id}:${h.account}`} data-kind={h.kind}>
              <td>{when(h.created_at)}</td>
              <td>{h.kind}</td>
              <td>{h.account}</td>
              <td className={`num ${h.amount_gwei < 0 ? "debit" : ""}`}>{eth(h.amount_gwei)}</td>
              <td title={h.reference ?? ""}>{h.memo || short(h.reference)}</td>
              <td data-testid="receipt">
                {checks[h.tx_id]
                  ?? (h.signature && ["escrow-hold", "rental"].includes(h.kind)
                    ? <button onClick={() => check(h)}>Verify receipt</button>
                    : h.signature ? "signed" : "")}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Keys() {
  const keys = useLoad(() => get("/v1/auth/keys"), []);
  const [name, setName] = useState("");
  const [run, outcome] = useOutcome();
  const create = run(async () => {
    const key = await post("/v1/auth/keys", { name });
    keys.reload();
    return `New key ${key.name}: ${key.key} (shown once)`;
  });
  const revoke = (id) => run(async () => {
    await request("DELETE", `/v1/auth/keys/${encodeURIComponent(id)}`);
    keys.reload();
    return "Key revoked";
  });
  return (
    <div className="card">
      <h2>API keys</h2>
      <Failed error={keys.error} />
      <form className="filters" onSubmit={create}>
        <Field label="Key name"><input aria-label="Key name" value={name} onChange={(e) => setName(e.target.value)} /></Field>
        <div className="actions"><button type="submit">Create key</button></div>
      </form>
      {outcome}
      <table data-testid="keys">
        <thead><tr><th>Name</th><th>Scopes</th><th>Created</th><th>Status</th><th /></tr></thead>
        <tbody>
          {(keys.data ?? []).map((k) => (
            <tr key={k.id} data-key={k.name}>
              <td>{k.name}</td><td>{(k.scopes ?? []).join(", ")}</td><td>{when(k.created_at)}</td>
              <td>{k.revoked_at ? "revoked" : "active"}</td>
              <td>{!k.revoked_at && <button onClick={revoke(k.id)}>Revoke</button>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
