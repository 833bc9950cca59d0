import { useCallback, useEffect, useState } from "react";

// Data loaded from the API: {data, error, loaded, reload}; reloaded every `everyMs` when given (pages without an
// event stream follow changes that way). `load` is handed a function that shows part of the data before the whole
// has loaded (a long list's first page): it is heeded only until the first load completes, so `data` may be
// partial while `loaded` is false, and later reloads replace the list only once they have it whole.
export function useLoad(load, deps, everyMs) {
  const [state, setState] = useState({ data: null, error: null, loaded: false });
  const reload = useCallback(() => load((part) => setState((s) => (s.loaded ? s : { ...s, data: part }))).then(
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

// A long list as a table that draws only the rows in view (and a few either side): every row has the same height
// (ROW_PX, kept by .long-list in styles.css), rows above and below the view are one spacer row each, so ten
// thousand items cost a few dozen rows in the page. `Row` gets {item, ...rowProps}; memoise it (memo) so a scroll
// or a new page of the list redraws only the rows that came into view. Filtering and sorting stay the caller's,
// over every item.
export const ROW_PX = 36;
const OVERSCAN = 10;

export function LongTable({ testid, head, items, row: Row, rowProps, label }) {
  const [top, setTop] = useState(0);
  const inView = Math.ceil(window.innerHeight / ROW_PX);
  const first = Math.max(0, Math.min(Math.floor(top / ROW_PX), items.length - inView) - OVERSCAN);
  const last = Math.min(items.length, first + inView + 2 * OVERSCAN);
  return (
    <div className="long-list" onScroll={(e) => setTop(e.currentTarget.scrollTop)}>
      <table data-testid={testid} aria-label={label} aria-rowcount={items.length + 1}>
        <thead><tr aria-rowindex={1}>{head}</tr></thead>
        <tbody>
          {first > 0 && <tr className="spacer" aria-hidden="true" style={{ height: first * ROW_PX }} />}
          {items.slice(first, last).map((item, i) => <Row key={item.id} item={item} index={first + i} {...rowProps} />)}
          {last < items.length && <tr className="spacer" aria-hidden="true" style={{ height: (items.length - last) * ROW_PX }} />}
        </tbody>
      </table>
    </div>
  );
}
