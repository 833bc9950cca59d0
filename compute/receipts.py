"""EIP-712 receipts for everything that moves money.

The domain fixes name, version, chain id and the vault's address, so a receipt signed for one chain or
one deployment never verifies on another.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_typed_data
from pydantic import BaseModel

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


class Domain(BaseModel):
    chain_id: int
    verifying_contract: str

    def as_eip712(self) -> dict:
        return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": self.chain_id,
                "verifyingContract": self.verifying_contract}


def _typed(domain: Domain, primary: str, message: dict) -> dict:
    return {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
            primary: TYPES[primary],
        },
        "primaryType": primary,
        "domain": domain.as_eip712(),
        "message": message,
    }


def sign(domain: Domain, primary: str, message: dict, account: Account | None = None) -> str:
    """Sign with ``account`` (a provider's wallet) or, by default, the platform signer."""
    signed = (account or platform_account()).sign_message(encode_typed_data(full_message=_typed(domain, primary, message)))
    return signed.signature.to_0x_hex()


def signer_of(domain: Domain, primary: str, message: dict, signature: str) -> str:
    return Account.recover_message(encode_typed_data(full_message=_typed(domain, primary, message)),
                                   signature=signature)


def verify(domain: Domain, primary: str, message: dict, signature: str) -> bool:
    try:
        return signer_of(domain, primary, message, signature) == platform_account().address
    except Exception:  # a malformed signature is simply not valid
        return False
