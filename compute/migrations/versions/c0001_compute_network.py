"""compute network: sign-in, API keys, providers, chain claims, provisions, leases, usage, ledger

Revision ID: c0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "c0001"
down_revision = None
branch_labels = ("compute",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cx_auth_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used", sa.Boolean, nullable=False),
    )
    op.create_table(
        "cx_auth_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("address", sa.String(42), nullable=False, index=True),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "cx_api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(42), nullable=False, index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_table(
        "cx_providers",
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("profile", sa.JSON, nullable=False),
        sa.Column("benchmark_score", sa.Float, nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.Column("last_heartbeat_ts", sa.BigInteger, nullable=False),
        sa.Column("heartbeats", sa.Integer, nullable=False),
        sa.Column("leases_completed", sa.Integer, nullable=False),
        sa.Column("leases_failed", sa.Integer, nullable=False),
        sa.Column("reputation", sa.Float, nullable=False),
        sa.Column("stake_unlocks_at", TS, nullable=True),
    )
    op.create_table(
        "cx_chain_claims",
        sa.Column("chain_id", sa.BigInteger, primary_key=True),
        sa.Column("tx_hash", sa.String(66), primary_key=True),
        sa.Column("log_index", sa.Integer, primary_key=True),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("account", sa.String(42), nullable=False, index=True),
        sa.Column("amount_wei", sa.String(80), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "cx_provisions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("provider", sa.String(42), sa.ForeignKey("cx_providers.address"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False, index=True),
        sa.Column("cpu", sa.Integer, nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("gpu_count", sa.Integer, nullable=False),
        sa.Column("gpu_model", sa.String(64), nullable=False),
        sa.Column("disk_gb", sa.Integer, nullable=False),
        sa.Column("free_cpu", sa.Integer, nullable=False),
        sa.Column("free_memory_mb", sa.Integer, nullable=False),
        sa.Column("free_gpu", sa.Integer, nullable=False),
        sa.Column("free_disk_gb", sa.Integer, nullable=False),
        sa.Column("price_gwei", sa.BigInteger, nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("images", sa.JSON, nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("available_until", TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False, index=True),
        # Capacity can never be over-reserved, whatever the application does.
        sa.CheckConstraint(
            "free_cpu >= 0 AND free_memory_mb >= 0 AND free_gpu >= 0 AND free_disk_gb >= 0",
            name="cx_provisions_capacity_nonneg",
        ),
    )
    op.create_table(
        "cx_leases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user", sa.String(42), nullable=False, index=True),
        sa.Column("provider", sa.String(42), nullable=False, index=True),
        sa.Column("provision_id", sa.String(36), sa.ForeignKey("cx_provisions.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("cpu", sa.Integer, nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("gpu_count", sa.Integer, nullable=False),
        sa.Column("disk_gb", sa.Integer, nullable=False),
        sa.Column("compute_units", sa.Integer, nullable=False),
        sa.Column("price_gwei", sa.BigInteger, nullable=False),
        sa.Column("term", sa.String(8), nullable=False),
        sa.Column("duration_s", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("image", sa.String(300), nullable=True),
        sa.Column("auto_renew", sa.Boolean, nullable=False),
        sa.Column("renewals", sa.Integer, nullable=False),
        sa.Column("escrow_gwei", sa.BigInteger, nullable=False),
        sa.Column("metered_s", sa.BigInteger, nullable=False),
        sa.Column("paid_gwei", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(8), nullable=False, index=True),
        sa.Column("end_reason", sa.String(16), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False, index=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("signature", sa.String(140), nullable=False),
    )
    op.create_table(
        "cx_usage",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("lease_id", sa.String(36), sa.ForeignKey("cx_leases.id"), nullable=False, index=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("seconds", sa.BigInteger, nullable=False),
        sa.Column("amount_gwei", sa.BigInteger, nullable=False),
        sa.Column("fee_gwei", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.String(140), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "cx_ledger_accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("kind", "owner"),
        # Only the chain account (money held on chain, outside the platform) may be negative.
        sa.CheckConstraint("balance >= 0 OR kind = 'chain'", name="cx_ledger_accounts_nonneg"),
    )
    op.create_table(
        "cx_ledger_txs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(24), nullable=False, index=True),
        sa.Column("reference", sa.String(80), nullable=True, index=True),
        sa.Column("memo", sa.String(300), nullable=False),
        sa.Column("signature", sa.String(140), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "cx_ledger_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tx_id", sa.String(36), sa.ForeignKey("cx_ledger_txs.id"), nullable=False, index=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("cx_ledger_accounts.id"), nullable=False, index=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "cx_ledger_entries",
        "cx_ledger_txs",
        "cx_ledger_accounts",
        "cx_usage",
        "cx_leases",
        "cx_provisions",
        "cx_chain_claims",
        "cx_providers",
        "cx_api_keys",
        "cx_auth_sessions",
        "cx_auth_nonces",
    ):
        op.drop_table(table)
