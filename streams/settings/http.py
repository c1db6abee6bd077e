"""The worker's HTTP API settings (docs/http-api.md).

A group of :class:`streams.settings.Settings`; read only through it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator


class HttpSettings(BaseModel):
    """Where the HTTP API listens, its token and its limits."""

    http_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the worker's HTTP API; 0 = any free port (written to the ready "
        "file and advertised to the other workers).",
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="Address the worker's HTTP API binds; 0.0.0.0 = every interface.",
    )
    http_advertised_host: str | None = Field(
        default=None,
        description="Host name the other workers reach this worker's HTTP API at; unset = "
        "http_host, or this machine's host name when http_host is 0.0.0.0 or ::.",
    )
    http_token: SecretStr | None = Field(
        default=None,
        description="Bearer token every /v1 request must carry (at least 16 characters; the "
        "same on every worker); unset = the /v1 routes answer 403 and only the probes and "
        "/openapi.json are served.",
    )
    http_rate_per_second: float = Field(
        default=200.0,
        gt=0,
        description="Requests per second one client address may make to one worker (token "
        "bucket); beyond it the API answers 429 with Retry-After.",
    )
    http_rate_burst: int = Field(
        default=400, ge=1, description="Requests one client address may make at once."
    )
    http_max_body_bytes: int = Field(
        default=16_384, ge=256, description="Largest HTTP request body; larger ones answer 413."
    )
    http_latest_users: int = Field(
        default=100_000,
        ge=1,
        description="Most users whose latest recommendation list a worker keeps in memory for "
        "the HTTP API (about 1 KiB each at top_k 20); the least recently answered go first.",
    )

    @field_validator("http_token")
    @classmethod
    def _http_token_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        # A short token can be guessed; 16 characters is the least we accept.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("http_token must have at least 16 characters")
        return value
