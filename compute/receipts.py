"""EIP-712 receipts for everything that moves money.

The domain fixes name, version, chain id and the vault's address, so a receipt signed for one chain or
one deployment never verifies on another.

Receipts issued together can share one signature: the platform signs the EIP-712 digest
``keccak256(0x1901 || domainSeparator || root)``, where ``root`` is the Merkle root of the messages'
``hashStruct`` values (pairs hashed in sorted order, as OpenZeppelin's ``MerkleProof`` does), and each
receipt carries the sibling hashes from its own ``hashStruct`` up to that root. A batch of one has an
empty proof and a root equal to the message's ``hashStruct``, so its signature is exactly the plain
EIP-712 signature of the message: plain receipts are batch receipts with an empty proof.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from coincurve import PrivateKey
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from pydantic import BaseModel
from sha3 import keccak_256

from compute.signer import platform_account

DOMAIN_NAME = "Cxmpute"
DOMAIN_VERSION = "1"

TYPES: dict[str, list[dict[str, str]]] = {
    "Lease": [
        {"name": "lease", "type": "string"},
        {"name": "user", "type": "address"},
        {"name": "provider", "type": "address"},
        {"name": "provision", "type": "string"},
        {"name": "computeUnits", "type": "uint256"},
        {"name": "priceGwei", "type": "uint256"},
        {"name": "term", "type": "string"},
        {"name": "durationS", "type": "uint256"},
        {"name": "escrowGwei", "type": "uint256"},
        {"name": "renewal", "type": "uint256"},
    ],
    "ProviderRegistration": [
        {"name": "provider", "type": "address"},
        {"name": "name", "type": "string"},
        {"name": "region", "type": "string"},
        {"name": "profileHash", "type": "bytes32"},
        {"name": "issuedAt", "type": "uint256"},
    ],
    "Heartbeat": [
        {"name": "provider", "type": "address"},
        {"name": "timestamp", "type": "uint256"},
    ],
    "Usage": [
        {"name": "lease", "type": "string"},
        {"name": "key", "type": "string"},
        {"name": "seconds", "type": "uint256"},
        {"name": "amountGwei", "type": "uint256"},
        {"name": "feeGwei", "type": "uint256"},
    ],
}


DOMAIN_TYPE: list[dict[str, str]] = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


class Domain(BaseModel):
    chain_id: int
    verifying_contract: str

    def as_eip712(self) -> dict:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }

    def separator(self) -> bytes:
        return _separator(self.chain_id, self.verifying_contract)


class BatchReceipt(BaseModel):
    """One message's receipt out of a signed batch: the batch signature and the message's Merkle proof."""

    signature: str
    proof: list[str]


def _typed(domain: Domain, primary: str, message: dict) -> dict:
    return {
        "types": {"EIP712Domain": DOMAIN_TYPE, primary: TYPES[primary]},
        "primaryType": primary,
        "domain": domain.as_eip712(),
        "message": message,
    }


def sign(domain: Domain, primary: str, message: dict, account: Account | None = None) -> str:
    """Sign with ``account`` (a provider's wallet) or, by default, the platform signer."""
    signed = (account or platform_account()).sign_message(
        encode_typed_data(full_message=_typed(domain, primary, message))
    )
    return signed.signature.to_0x_hex()


def sign_batch(
    domain: Domain, primary: str, messages: Sequence[dict], account: Account | None = None
) -> list[BatchReceipt]:
    """Sign ``messages`` with one signature over their Merkle root, by ``account`` or by default the platform
    signer; one receipt per message."""
    root, proofs = merkle([struct_hash(primary, m) for m in messages])
    secret = bytes((account or platform_account()).key)
    signature = "0x" + _sign_digest(secret, keccak(b"\x19\x01" + domain.separator() + root)).hex()
    return [BatchReceipt(signature=signature, proof=["0x" + node.hex() for node in proof]) for proof in proofs]


def _sign_digest(secret: bytes, digest: bytes) -> bytes:
    # eth-account derives the public key again on every signature; a kept coincurve key signs in a fraction.
    rsv = _key(secret).sign_recoverable(digest, hasher=None)
    return rsv[:64] + bytes([27 + rsv[64]])


@lru_cache(maxsize=4)
def _key(secret: bytes) -> PrivateKey:
    return PrivateKey(secret)


def signer_of(domain: Domain, primary: str, message: dict, signature: str, proof: Sequence[str] = ()) -> str:
    # eth-account's encoder validates the message here; its body is the message's hashStruct.
    typed = encode_typed_data(full_message=_typed(domain, primary, message))
    root = fold(bytes(typed.body), [bytes.fromhex(node.removeprefix("0x")) for node in proof])
    return Account.recover_message(
        SignableMessage(version=b"\x01", header=typed.header, body=root), signature=signature
    )


def verify(domain: Domain, primary: str, message: dict, signature: str, proof: Sequence[str] = ()) -> bool:
    """Whether the platform signed ``message`` alone (empty ``proof``) or in a batch it proves membership of."""
    try:
        return signer_of(domain, primary, message, signature, proof) == platform_account().address
    except Exception:  # a malformed signature or proof is simply not valid
        return False


def struct_hash(primary: str, message: dict) -> bytes:
    """EIP-712 ``hashStruct`` of a message of one of :data:`TYPES` (flat structs of atomic fields only).

    Encoded directly rather than through eth-account's generic encoder, which costs as much as the
    signature itself; tests hold the two equal."""
    return _hash_struct(primary, TYPES[primary], message)


def _hash_struct(name: str, fields: list[dict[str, str]], message: dict) -> bytes:
    type_hash, encoders = _layout(name, fields)
    return keccak(type_hash + b"".join(encode(message[field]) for field, encode in encoders))


def keccak(data: bytes) -> bytes:
    """Keccak-256 (Ethereum's, not SHA3-256). The native implementation hashes a receipt's fields about ten times
    faster than the generic one, and a batch of placements hashes five times per lease."""
    return keccak_256(data).digest()


def merkle(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root over ``leaves`` and each leaf's proof (sibling hashes, bottom up)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    proofs: list[list[bytes]] = [[] for _ in leaves]
    level = [(leaf, [i]) for i, leaf in enumerate(leaves)]  # (node, leaves under it)
    while len(level) > 1:
        up = []
        for i in range(0, len(level) - 1, 2):
            (left, under_left), (right, under_right) = level[i], level[i + 1]
            for leaf in under_left:
                proofs[leaf].append(right)
            for leaf in under_right:
                proofs[leaf].append(left)
            up.append((_pair(left, right), under_left + under_right))
        if len(level) % 2:  # the odd node out moves up unchanged and adds nothing to its leaves' proofs
            up.append(level[-1])
        level = up
    return level[0][0], proofs


def fold(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root a proof leads to from ``leaf`` (OpenZeppelin's ``MerkleProof.processProof``)."""
    node = leaf
    for sibling in proof:
        node = _pair(node, sibling)
    return node


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b if a < b else b + a)


def _string(value: object) -> bytes:
    return keccak(str(value).encode())


def _address(value: object) -> bytes:
    raw = bytes.fromhex(str(value).removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"not an address: {value!r}")
    return raw.rjust(32, b"\0")


def _uint256(value: object) -> bytes:
    return int(value).to_bytes(32, "big")


def _bytes32(value: object) -> bytes:
    raw = value if isinstance(value, bytes) else bytes.fromhex(str(value).removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError(f"not 32 bytes: {value!r}")
    return raw


_ENCODERS: dict[str, Callable[[object], bytes]] = {
    "string": _string,
    "address": _address,
    "uint256": _uint256,
    "bytes32": _bytes32,
}
_layouts: dict[str, tuple[bytes, list[tuple[str, Callable[[object], bytes]]]]] = {}


def _layout(name: str, fields: list[dict[str, str]]) -> tuple[bytes, list[tuple[str, Callable[[object], bytes]]]]:
    """A struct's type hash and, in order, each field's name and encoder; built once per struct."""
    found = _layouts.get(name)
    if found is None:
        unknown = [f["type"] for f in fields if f["type"] not in _ENCODERS]
        if unknown:
            raise ValueError(f"no encoding for EIP-712 type {unknown[0]}")
        signature = f"{name}({','.join(f['type'] + ' ' + f['name'] for f in fields)})"
        found = _layouts[name] = (
            keccak(signature.encode()),
            [(f["name"], _ENCODERS[f["type"]]) for f in fields],
        )
    return found


@lru_cache(maxsize=16)
def _separator(chain_id: int, verifying_contract: str) -> bytes:
    return _hash_struct(
        "EIP712Domain",
        DOMAIN_TYPE,
        {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id, "verifyingContract": verifying_contract},
    )
