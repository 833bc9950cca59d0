import { api, session } from "./api.js";

// Sign-In with Ethereum (EIP-4361) through the browser's wallet (window.ethereum, EIP-1193). The platform
// accepts the address only in its EIP-55 form, and wallets hand it over in lower case.
export function signInMessage({ domain, uri, address, chainId, nonce, issuedAt, expiresAt }) {
  return [
    `${domain} wants you to sign in with your Ethereum account:`, toChecksumAddress(address), "",
    "Sign in to Cxmpute", "",
    `URI: ${uri}`, "Version: 1", `Chain ID: ${chainId}`, `Nonce: ${nonce}`,
    `Issued At: ${issuedAt}`, `Expiration Time: ${expiresAt}`,
  ].join("\n");
}

// EIP-55: a hex letter is upper case where the same position of keccak-256(lower-case hex) is 8 or more.
export function toChecksumAddress(address) {
  const hex = address.toLowerCase().replace(/^0x/, "");
  const hash = keccak256(new TextEncoder().encode(hex));
  return "0x" + [...hex].map((c, i) => ((hash[i >> 1] >> (i % 2 ? 0 : 4)) & 15) >= 8 ? c.toUpperCase() : c).join("");
}

// Keccak-256 with Keccak's own padding (Ethereum's hash, not SHA3-256), on 64-bit lanes held as BigInts.
const MASK = (1n << 64n) - 1n;
const rotl = (x, n) => ((x << BigInt(n)) | (x >> BigInt(64 - n))) & MASK;
const ROUND_CONSTANTS = (() => {
  const constants = [];
  let lfsr = 1;
  for (let round = 0; round < 24; round++) {
    let c = 0n;
    for (let j = 0; j < 7; j++) {
      lfsr = ((lfsr << 1) ^ ((lfsr >> 7) * 0x71)) % 256;
      if (lfsr & 2) c ^= 1n << BigInt((1 << j) - 1);
    }
    constants.push(c);
  }
  return constants;
})();

function keccakF(lanes) {
  for (const rc of ROUND_CONSTANTS) {
    const c = [0, 1, 2, 3, 4].map((x) => lanes[x] ^ lanes[x + 5] ^ lanes[x + 10] ^ lanes[x + 15] ^ lanes[x + 20]);
    for (let x = 0; x < 5; x++) {
      const d = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1);
      for (let y = 0; y < 25; y += 5) lanes[x + y] ^= d;
    }
    let [x, y, current] = [1, 0, lanes[1]];
    for (let t = 0; t < 24; t++) {
      [x, y] = [y, (2 * x + 3 * y) % 5];
      [current, lanes[x + 5 * y]] = [lanes[x + 5 * y], rotl(current, ((t + 1) * (t + 2) / 2) % 64)];
    }
    for (let y = 0; y < 25; y += 5) {
      const row = lanes.slice(y, y + 5);
      for (let x = 0; x < 5; x++) lanes[y + x] = row[x] ^ (~row[(x + 1) % 5] & MASK & row[(x + 2) % 5]);
    }
    lanes[0] ^= rc;
  }
}

function keccak256(bytes) {
  const rate = 136;
  const padded = new Uint8Array(Math.ceil((bytes.length + 1) / rate) * rate);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  const lanes = new Array(25).fill(0n);
  for (let block = 0; block < padded.length; block += rate) {
    for (let i = 0; i < rate / 8; i++) {
      for (let b = 0; b < 8; b++) lanes[i] ^= BigInt(padded[block + 8 * i + b]) << BigInt(8 * b);
    }
    keccakF(lanes);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = Number((lanes[i >> 3] >> BigInt(8 * (i % 8))) & 255n);
  return out;
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
  const message = signInMessage({ domain: nonce.domain, uri: nonce.uri, address, chainId, nonce: nonce.nonce, issuedAt: iso(now),
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
