// The console's calls to the platform API, with the session the builder's sign-in keeps (one session for both).
import { answer, session } from "../../builder/src/api.js";

export { session };

export function authHeaders(extra = {}) {
  const token = session.get()?.token;
  return token ? { ...extra, authorization: `Bearer ${token}` } : extra;
}

export async function request(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: authHeaders(body === undefined ? {} : { "content-type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return answer(res);
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body ?? {});

// Every page of a paged list (limit/offset), up to `cap` items: the market's offer book is paged at 500. After
// the first page, `ahead` pages are kept in flight (the next asked for as each one arrives, not in waves that wait
// on their slowest page) until one comes back short. `first`, when given, gets the first page as soon as it
// arrives (so a page can show it); otherwise the list is returned whole, once, so a page draws it at most twice,
// not once per page.
export async function all(path, pageSize = 500, cap = 20_000, { ahead = 6, first } = {}) {
  const sep = path.includes("?") ? "&" : "?";
  const page = async (offset) => {
    const body = await get(`${path}${sep}limit=${pageSize}&offset=${offset}`);
    return Array.isArray(body) ? body : body.items;
  };
  const pages = [await page(0)];
  let next = pageSize;
  let end = pages[0].length < pageSize ? 0 : cap; // the list ends at or before this offset
  if (end && first) first(pages[0].slice(0, cap));
  const fetcher = async () => {
    while (next < end) {
      const offset = next;
      next += pageSize;
      const items = await page(offset);
      pages[offset / pageSize] = items;
      if (items.length < pageSize) end = Math.min(end, offset); // the list ended here: ask for no page beyond
    }
  };
  await Promise.all(Array.from({ length: ahead }, fetcher));
  const out = [];
  for (const items of pages) {
    out.push(...items);
    if (items.length < pageSize || out.length >= cap) break;
  }
  return out.slice(0, cap);
}

const GWEI = 1_000_000_000n;
// Amounts are gwei integers; shown in ETH with up to 9 decimals, exact (no floating point).
export function eth(gwei) {
  const v = BigInt(gwei ?? 0);
  const neg = v < 0n;
  const a = neg ? -v : v;
  const frac = (a % GWEI).toString().padStart(9, "0").replace(/0+$/, "");
  return `${neg ? "-" : ""}${a / GWEI}${frac ? "." + frac : ""} ETH`;
}

export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
export const short = (id) => (id ? `${id.slice(0, 8)}…` : "");
export function duration(start, end) {
  if (!start) return "";
  const s = Math.max(0, ((end ? Date.parse(end) : Date.now()) - Date.parse(start)) / 1000);
  return s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
}
