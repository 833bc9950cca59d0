import { useCallback, useEffect, useState } from "react";

// Data loaded from the API: {data, error, loaded, reload}; reloaded every `everyMs` when given (pages without an
// event stream follow changes that way).
export function useLoad(load, deps, everyMs) {
  const [state, setState] = useState({ data: null, error: null, loaded: false });
  const reload = useCallback(() => load().then(
    (data) => setState({ data, error: null, loaded: true }),
    (error) => setState((s) => ({ data: s.data, error, loaded: true })),
  ), deps); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    reload();
    if (!everyMs) return undefined;
    const timer = setInterval(reload, everyMs);
    return () => clearInterval(timer);
  }, [reload, everyMs]);
  return { ...state, reload };
}

export function NeedsSignIn({ what }) {
  return <p className="hint" data-testid="needs-sign-in">Sign in with your wallet to see {what}.</p>;
}

export function Failed({ error }) {
  return error ? <p className="error" role="alert">{error.message}</p> : null;
}

export function Field({ label, children }) {
  return <label className="field"><span>{label}</span>{children}</label>;
}

// A form's outcome line: what the last action did, or why it failed.
export function useOutcome() {
  const [outcome, setOutcome] = useState(null);
  const run = (fn) => async (event) => {
    event?.preventDefault?.();
    try { setOutcome({ ok: await fn() }); } catch (e) { setOutcome({ error: e.message }); }
  };
  const view = outcome && (
    <p className={outcome.error ? "error" : "ok"} data-testid="outcome" role="status">{outcome.error ?? outcome.ok}</p>
  );
  return [run, view];
}
