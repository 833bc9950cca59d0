import { api, session } from "./api.js";

// Sign-In with Ethereum (EIP-4361) through the browser's wallet (window.ethereum, EIP-1193).
export function signInMessage({ domain, address, chainId, nonce, issuedAt, expiresAt }) {
  return [
    `${domain} wants you to sign in with your Ethereum account:`, address, "",
    "Sign in to Cxmpute", "",
    `URI: http://${domain}`, "Version: 1", `Chain ID: ${chainId}`, `Nonce: ${nonce}`,
    `Issued At: ${issuedAt}`, `Expiration Time: ${expiresAt}`,
  ].join("\n");
}

const iso = (d) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

export async function signIn() {
  const wallet = window.ethereum;
  if (!wallet) throw new Error("no wallet in this browser (window.ethereum)");
  const [address] = await wallet.request({ method: "eth_requestAccounts" });
  const chainId = parseInt(await wallet.request({ method: "eth_chainId" }), 16);
  const nonce = await api.nonce();
  if (!nonce.chain_ids.includes(chainId)) throw new Error(`the wallet is on chain ${chainId}, which this network does not accept`);
  const now = new Date();
  const message = signInMessage({ domain: nonce.domain, address, chainId, nonce: nonce.nonce, issuedAt: iso(now),
                                  expiresAt: iso(new Date(Math.min(now.getTime() + 10 * 60_000, Date.parse(nonce.expires_at)))) });
  const signature = await wallet.request({ method: "personal_sign", params: [toHex(message), address] });
  const token = await api.verify(message, signature);
  session.set({ token: token.token, address: token.address });
  return token.address;
}

export async function signOut() {
  try { await api.logout(); } finally { session.set(null); }
}

function toHex(text) {
  return `0x${[...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}
