import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { signIn, signOut } from "../../builder/src/wallet.js";
import { session } from "./client.js";
import Account from "./Account.jsx";
import Market from "./Market.jsx";
import Provider from "./Provider.jsx";
import Runs from "./Runs.jsx";
import Storage from "./Storage.jsx";
import Workloads from "./Workloads.jsx";
import "uplot/dist/uPlot.min.css";
import "./styles.css";

// Pages are picked by the URL's hash (#/market, #/runs/<id>): the platform serves one page at /console.
const PAGES = { market: Market, account: Account, provider: Provider, workloads: Workloads, storage: Storage, runs: Runs };
const TITLES = { market: "Market", account: "Account", provider: "Provider", workloads: "Workloads", storage: "Storage", runs: "Runs" };

function useRoute() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  const [page, ...rest] = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  return [PAGES[page] ? page : "market", rest];
}

function App() {
  const [page, rest] = useRoute();
  const [address, setAddress] = useState(() => session.get()?.address ?? null);
  const [error, setError] = useState(null);
  const Page = PAGES[page];
  const act = (fn) => () => fn().then(() => setAddress(session.get()?.address ?? null), (e) => setError(e.message));
  return (
    <div className="console">
      <header>
        <strong>Cxmpute console</strong>
        <nav>
          {Object.keys(PAGES).map((p) => (
            <a key={p} href={`#/${p}`} className={p === page ? "current" : ""}>{TITLES[p]}</a>
          ))}
          <a href="/">Builder</a>
        </nav>
        <span className="who">
          <span data-testid="owner">{address ?? "local"}</span>
          {address
            ? <button onClick={act(signOut)}>Sign out</button>
            : <button onClick={act(signIn)}>Sign in with wallet</button>}
        </span>
      </header>
      {error && <div className="error" role="alert" onClick={() => setError(null)}>{error}</div>}
      <main>
        {/* a new account's page starts afresh */}
        <Page key={`${page}:${address}`} address={address} args={rest} />
      </main>
    </div>
  );
}

createRoot(document.getElementById("root")).render(<StrictMode><App /></StrictMode>);
