"""Settings, read once from the environment (`CONFIDE_` prefix).

The names and the list format (comma-separated) are part of the wire contract
(PROTOCOL.md, Operations): deployments and tooling rely on them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy import make_url

from app.core.broker_url import broker_kind
from app.core.passwords import DEFAULT_MEMORY_KIB, DEFAULT_TIME_COST, meets_owasp

CommaList = Annotated[list[str], NoDecode]
METRICS_TOKEN_MIN = 16
#: Defaults of `head_timeout`, `body_timeout` and `body_min_rate` (slow clients).
HEAD_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 20.0
BODY_MIN_RATE = 500


def split_host_port(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); ValueError otherwise."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port, such as 10.0.0.5:9100")
    return host, int(port)


#: The secrets that CONFIDE_<NAME>_FILE may name a file for.
SECRET_FILES = (
    "database_url",
    "migration_database_url",
    "broker_url",
    "master_keys",
    "index_key",
    "turn_secret",
    "metrics_token",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONFIDE_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./data")
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite file in the data dir"
    )
    #: PostgreSQL with two roles (docs/operations.md, "Two database roles"): the
    #: owner's URL, with which migrations, the grants to the server's role (the
    #: user of `database_url`) and restores run; unset: `database_url` for all.
    migration_database_url: SecretStr | None = None
    # A secret: a Redis URL may carry its password.
    broker_url: SecretStr = SecretStr("memory://")
    broker_prefix: str = Field(default="confide", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    # Budgets: how long one call to a dependency may take before it fails (a
    # 503 `unavailable`, a close 1013, an `unavailable` error frame), so that a
    # database or Redis that hangs instead of refusing holds no request, task
    # or connection longer than this. Connecting to PostgreSQL (asyncpg's
    # `timeout`); one statement (asyncpg's `command_timeout`, and the server's
    # `statement_timeout`); waiting for a connection of the pool when all are
    # in use; connecting to Redis and waiting for one reply (both).
    database_connect_timeout_s: float = Field(default=5.0, gt=0, le=60)
    database_statement_timeout_s: float = Field(default=10.0, gt=0, le=600)
    database_pool_timeout_s: float = Field(default=5.0, gt=0, le=60)
    broker_timeout_s: float = Field(default=2.0, gt=0, le=2)
    allowed_origins: CommaList = Field(default_factory=list)
    #: Processes `confide serve` runs on its one port (`--workers` overrides it).
    workers: int = Field(default=1, ge=1, le=64)

    # Keys. In development they are generated into the data dir on first start;
    # production refuses to start without them.
    master_keys: SecretStr | None = Field(
        default=None, description="kid:base64url-key,... (oldest first; the last one encrypts)"
    )
    index_key: SecretStr | None = Field(default=None, description="base64url, 32 bytes")
    signing_key_file: Path | None = None
    issuer: str = "confide"

    access_token_ttl: int = Field(default=900, ge=60, le=900)
    refresh_idle_timeout: int = Field(default=1800, ge=60, le=1800)
    refresh_max_lifetime: int = Field(default=12 * 3600, ge=600, le=7 * 24 * 3600)
    room_token_ttl: int = Field(default=300, ge=30, le=900)
    ws_rate_per_s: int = Field(default=100, ge=1, le=10_000)
    ws_idle_timeout: float = Field(default=300.0, gt=0, le=3600)
    #: Room-socket upgrades one client address may make: a sustained rate per
    #: second and a burst. Past them the upgrade is refused with 429 and
    #: Retry-After before any token is looked at. Behind a reverse proxy the
    #: address is the forwarded one, so a clinic behind one NAT shares it.
    ws_handshake_rate_per_s: float = Field(default=5.0, gt=0, le=10_000)
    ws_handshake_burst: int = Field(default=20, ge=1, le=100_000)
    #: Seconds a socket that authenticates by its first frame has to send it.
    ws_auth_timeout: float = Field(default=5.0, gt=0, le=60)
    #: How often idle sockets are looked for (and room timers the clock has
    #: reached fired); unset: a quarter of the idle timeout, from 0.5 to 30 s.
    ws_sweep_interval: float | None = Field(default=None, gt=0, le=30)

    retention_ended_room_s: int = Field(default=3600, ge=0, le=86400)
    # A room's replay store (decision note 0005): caps in frames and in bytes
    # (the oldest go first), each sender's quota in it, and the idle time after
    # which an open room's store is deleted.
    replay_max_frames: int = Field(default=20_000, ge=100, le=1_000_000)
    replay_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1024 * 1024, le=1024**3)
    replay_sender_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024 * 1024, le=1024**3)
    replay_idle_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    retention_dead_tokens_s: int = Field(default=3600, ge=0, le=30 * 86400)
    purge_interval_s: int = Field(default=300, ge=10, le=86400)
    #: How long the answer to a write sent with an `Idempotency-Key` is kept for its
    #: retries (decision note 0013): at least a minute, at most a week; the purge
    #: deletes it after that.
    idempotency_ttl_s: int = Field(default=86400, ge=60, le=7 * 86400)

    # Signed checkpoints of the audit chain's head, written outside the database.
    audit_checkpoint_interval_s: int = Field(default=300, ge=1, le=86400)
    audit_checkpoint_file: Path | None = Field(
        default=None,
        description="append-only JSON lines; default: audit-checkpoints.jsonl in the data dir",
    )
    audit_checkpoint_syslog: str | None = Field(
        default=None,
        pattern=r"^(/\S+|[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5})$",
        description="also send each checkpoint to syslog: a Unix socket path or host:port (UDP)",
    )

    turn_secret: SecretStr | None = None
    turn_urls: CommaList = Field(default_factory=list)

    # argon2id's cost. Production refuses less than one of OWASP's rows
    # (app/core/passwords.py); the tests lower it.
    password_memory_kib: int = Field(default=DEFAULT_MEMORY_KIB, ge=8, le=4 * 1024 * 1024)
    password_time_cost: int = Field(default=DEFAULT_TIME_COST, ge=1, le=100)
    password_parallelism: int = Field(default=1, ge=1, le=64)
    #: Hashes that run at once, each on a thread of its own and holding
    #: `password_memory_kib` (unset: 2 x cores), and how many more may wait for
    #: a thread (unset: as many as run); beyond that a log-in, registration or
    #: password change is refused at once with 503 `busy` and Retry-After.
    password_concurrency: int | None = Field(default=None, ge=1, le=256)
    password_queue: int | None = Field(default=None, ge=0, le=4096)

    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_window_s: int = Field(default=900, ge=1)

    # Second factors (app/mfa). MFA required for counselors and admins: unset,
    # required in production only. A sensitive act needs an authentication no
    # older than `step_up_max_age` seconds.
    mfa_required: bool | None = None
    step_up_max_age: int = Field(default=600, ge=60, le=3600)
    mfa_token_ttl: int = Field(default=300, ge=60, le=600)
    #: The WebAuthn relying party: its id (a registrable domain; unset in
    #: development: "localhost"; production refuses to start without it), its
    #: name, and the origins a ceremony may come from (unset in development:
    #: http://localhost:8000 and the allowed origins; production needs them).
    webauthn_rp_id: str | None = None
    webauthn_rp_name: str = "Confide"
    webauthn_origins: CommaList = Field(default_factory=list)
    #: MLS KeyPackage claims an account may make in `key_package_claim_window_s`.
    key_package_claims_per_window: int = Field(default=30, ge=1)
    key_package_claim_window_s: int = Field(default=60, ge=1)
    #: MLS GroupInfo uploads an account may make in `group_info_upload_window_s`.
    group_info_uploads_per_window: int = Field(default=30, ge=1)
    group_info_upload_window_s: int = Field(default=60, ge=1)

    #: A new room's `safety_checkin` when its creator names none (`required`,
    #: `optional` or `off`); unset: `required` in production, `off` in development.
    safety_checkin_default: Literal["required", "optional", "off"] | None = None
    #: A client's room token when their check-in's jurisdiction is none the room's
    #: hosts are licensed for: issued with the host shown the mismatch (`warn`), or
    #: refused with `jurisdiction_mismatch` (`refuse`).
    jurisdiction_mismatch: Literal["warn", "refuse"] = "warn"

    #: Serve the reference web client at /app/; unset: on in development, off in production.
    web_client: bool | None = None

    #: A server that lies on purpose, for client test suites only (app/faults.py);
    #: production refuses any value.
    test_fault: Literal["swap_device_key"] | None = None

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Slow clients (app/web/http_protocol.py): a request head must be whole this
    # many seconds after its first byte (and a connection that sends nothing is
    # closed after as long); a body may stall at most `body_timeout` seconds,
    # and after the first `body_timeout` seconds must keep up `body_min_rate`
    # bytes a second on average. Past either: 408 `request_timeout`, closed.
    head_timeout: float = Field(default=HEAD_TIMEOUT_S, ge=0.1, le=300)
    body_timeout: float = Field(default=BODY_TIMEOUT_S, ge=0.1, le=600)
    body_min_rate: int = Field(default=BODY_MIN_RATE, ge=1, le=10 * 1024 * 1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: What the log shows of a client's address: nothing, its /24 (IPv4) or
    #: /48 (IPv6), or a keyed hash (HMAC-SHA256 under a key derived from the
    #: index key, 16 hex digits).
    log_client_addresses: Literal["off", "truncated", "keyed"] = "off"

    # Signed webhooks (app/webhooks): how often the outbox is looked at, how
    # long one attempt may take, the backoff between attempts (exponential
    # from the base up to the cap, with jitter), and how long an event is
    # retried before it is marked failed (3 days).
    webhook_worker: bool = True
    webhook_poll_s: float = Field(default=1.0, gt=0, le=60)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)
    webhook_backoff_base_s: float = Field(default=5.0, gt=0, le=3600)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0, le=86400)
    webhook_max_age_s: int = Field(default=3 * 86400, ge=1, le=30 * 86400)

    #: The practice's breach notification deadlines by jurisdiction, over the shipped
    #: table (app/incidents/state_deadlines.py): a JSON array of
    #: {jurisdiction, days, source}. A bad file stops the server.
    breach_deadlines_file: Path | None = None

    # /metrics: behind a bearer token on the main listener, or on a listener of
    # its own (host:port, for the internal network), or not served at all.
    metrics_token: SecretStr | None = None
    metrics_addr: str | None = None

    # Every secret may come from a file instead (CONFIDE_<NAME>_FILE: Docker and
    # Kubernetes secrets), so that it is not in the environment for all to see.
    database_url_file: Path | None = None
    migration_database_url_file: Path | None = None
    broker_url_file: Path | None = None
    master_keys_file: Path | None = None
    index_key_file: Path | None = None
    turn_secret_file: Path | None = None
    metrics_token_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in SECRET_FILES:
            path = data.get(f"{name}_file")
            if path is None or path == "":
                continue
            variable = f"CONFIDE_{name.upper()}"
            if data.get(name) not in (None, ""):
                raise ValueError(f"{variable} and {variable}_FILE are both set; set one of them")
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                why = getattr(error, "strerror", None) or type(error).__name__
                raise ValueError(f"{variable}_FILE: cannot read {path}: {why}") from None
            data = {**data, name: text.rstrip("\r\n")}
        return data

    @field_validator(
        "audit_checkpoint_syslog",
        "web_client",
        "mfa_required",
        "webauthn_rp_id",
        "safety_checkin_default",
        "breach_deadlines_file",
        "password_concurrency",
        "password_queue",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("test_fault", mode="before")
    @classmethod
    def _no_fault_in_production(cls, value: object, info: ValidationInfo) -> object:
        if value is None or value == "":
            return None
        if info.data.get("env") == "production":
            raise ValueError("exists for client test suites only; production refuses any value")
        return value

    @field_validator("allowed_origins", "turn_urls", "webauthn_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator(
        "log_level",
        "log_client_addresses",
        "safety_checkin_default",
        "jurisdiction_mismatch",
        mode="before",
    )
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _metrics_token(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if not isinstance(raw, str) or len(raw.strip()) < METRICS_TOKEN_MIN:
            raise ValueError(f"must be at least {METRICS_TOKEN_MIN} characters")
        return raw.strip()

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: SecretStr) -> SecretStr:
        broker_kind(value.get_secret_value())
        return value

    @field_validator("metrics_addr", mode="before")
    @classmethod
    def _metrics_addr(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise ValueError("must be host:port")
        split_host_port(value.strip())
        return value.strip()

    @field_validator("password_time_cost")
    @classmethod
    def _production_password_cost(cls, value: int, info: ValidationInfo) -> int:
        memory = info.data.get("password_memory_kib")
        if info.data.get("env") == "production" and memory and not meets_owasp(memory, value):
            raise ValueError(
                "with CONFIDE_PASSWORD_MEMORY_KIB, below OWASP's argon2id minimum"
                " (19456 KiB and 2 iterations, or an equivalent row); production refuses it"
            )
        return value

    @model_validator(mode="after")
    def _migration_role(self) -> Settings:
        if self.migration_database_url is None:
            return self
        for name, url in (
            ("CONFIDE_DATABASE_URL", self.resolved_database_url),
            ("CONFIDE_MIGRATION_DATABASE_URL", self.resolved_migration_database_url),
        ):
            if not url.startswith("postgresql"):
                raise ValueError(
                    f"CONFIDE_MIGRATION_DATABASE_URL is for PostgreSQL with two roles; "
                    f"{name} is not a PostgreSQL URL"
                )
        return self

    @model_validator(mode="after")
    def _webhook_backoff(self) -> Settings:
        if self.webhook_backoff_max_s < self.webhook_backoff_base_s:
            raise ValueError(
                "CONFIDE_WEBHOOK_BACKOFF_MAX_S must be at least CONFIDE_WEBHOOK_BACKOFF_BASE_S"
            )
        return self

    @property
    def requires_mfa(self) -> bool:
        """Whether counselors and admins must have a second factor."""
        return self.mfa_required if self.mfa_required is not None else self.is_production

    def production_webauthn_missing(self) -> str | None:
        """What production lacks to verify passkeys (it will not serve without it), if anything."""
        if not self.is_production:
            return None
        missing = [
            name
            for name, value in (
                ("CONFIDE_WEBAUTHN_RP_ID", self.webauthn_rp_id),
                ("CONFIDE_WEBAUTHN_ORIGINS", self.webauthn_origins),
            )
            if not value
        ]
        return " and ".join(missing) + " (passkeys)" if missing else None

    @property
    def resolved_webauthn_rp_id(self) -> str:
        return self.webauthn_rp_id or "localhost"

    @property
    def resolved_webauthn_origins(self) -> list[str]:
        if self.webauthn_origins:
            return list(self.webauthn_origins)
        return ["http://localhost:8000", *self.allowed_origins]

    @property
    def metrics_listener(self) -> tuple[str, int] | None:
        return split_host_port(self.metrics_addr) if self.metrics_addr else None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.data_dir / 'confide.db').resolve()}"

    @property
    def resolved_migration_database_url(self) -> str:
        if self.migration_database_url is not None:
            return self.migration_database_url.get_secret_value()
        return self.resolved_database_url

    @property
    def server_role(self) -> str | None:
        """The role the server runs as, when migrations run as another; else None."""
        if self.migration_database_url is None:
            return None
        server = make_url(self.resolved_database_url).username
        owner = make_url(self.resolved_migration_database_url).username
        return server if server and server != owner else None

    @property
    def resolved_audit_checkpoint_file(self) -> Path:
        return self.audit_checkpoint_file or self.data_dir / "audit-checkpoints.jsonl"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def room_safety_checkin(self) -> Literal["required", "optional", "off"]:
        """A new room's `safety_checkin` when its creator names none."""
        if self.safety_checkin_default is not None:
            return self.safety_checkin_default
        return "required" if self.is_production else "off"

    @property
    def serves_web_client(self) -> bool:
        return self.web_client if self.web_client is not None else not self.is_production


@lru_cache
def get_settings() -> Settings:
    return Settings()
