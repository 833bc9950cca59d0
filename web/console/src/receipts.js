// EIP-712 lease receipts checked in the page: the platform signs keccak256(0x1901 || domainSeparator || root),
// where root folds the lease's hashStruct with its Merkle proof (empty when the lease was signed alone), as
// compute/receipts.py describes. A receipt verifies when the signature recovers the platform's signer.
import { secp256k1 } from "@noble/curves/secp256k1";
import { keccak_256 } from "@noble/hashes/sha3";

const text = (s) => new TextEncoder().encode(s);
const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (h) => Uint8Array.from(h.replace(/^0x/, "").match(/../g) ?? [], (b) => parseInt(b, 16));
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};

const DOMAIN = [["string", "name"], ["string", "version"], ["uint256", "chainId"], ["address", "verifyingContract"]];
const LEASE = [
  ["string", "lease"], ["address", "user"], ["address", "provider"], ["string", "provision"],
  ["uint256", "computeUnits"], ["uint256", "priceGwei"], ["string", "term"], ["uint256", "durationS"],
  ["uint256", "escrowGwei"], ["uint256", "renewal"],
];

function encode(type, value) {
  if (type === "string") return keccak_256(text(String(value)));
  if (type === "address") return concat(new Uint8Array(12), unhex(value));
  return unhex(BigInt(value).toString(16).padStart(64, "0"));
}

function hashStruct(name, fields, message) {
  const typeHash = keccak_256(text(`${name}(${fields.map(([t, n]) => `${t} ${n}`).join(",")})`));
  return keccak_256(concat(typeHash, ...fields.map(([t, n]) => encode(t, message[n]))));
}

function fold(leaf, proof) {
  let node = leaf;
  for (const sibling of proof.map(unhex)) {
    node = hex(node) < hex(sibling) ? keccak_256(concat(node, sibling)) : keccak_256(concat(sibling, node));
  }
  return node;
}

export function leaseMessage(lease) {
  return {
    lease: lease.id, user: lease.user, provider: lease.provider, provision: lease.provision_id,
    computeUnits: lease.compute_units, priceGwei: lease.price_gwei, term: lease.term,
    durationS: lease.duration_s, escrowGwei: lease.escrow_gwei, renewal: lease.renewals,
  };
}

// The address that signed `lease`'s receipt on `chain` ({chain_id, vault_address}).
export function leaseSigner(lease, chain) {
  const separator = hashStruct("EIP712Domain", DOMAIN, {
    name: "Cxmpute", version: "1", chainId: chain.chain_id, verifyingContract: chain.vault_address,
  });
  const root = fold(hashStruct("Lease", LEASE, leaseMessage(lease)), lease.receipt_proof ?? []);
  const digest = keccak_256(concat(new Uint8Array([0x19, 0x01]), separator, root));
  const sig = unhex(lease.signature);
  const recovery = sig[64] >= 27 ? sig[64] - 27 : sig[64];
  const point = secp256k1.Signature.fromCompact(sig.slice(0, 64)).addRecoveryBit(recovery).recoverPublicKey(digest);
  return `0x${hex(keccak_256(point.toRawBytes(false).slice(1)).slice(12))}`;
}

export function verifyLease(lease, chain) {
  try {
    return leaseSigner(lease, chain).toLowerCase() === chain.receipt_signer.toLowerCase();
  } catch {
    return false; // a malformed signature or proof is simply not valid
  }
}
