"""How every client talks to the brokers: TLS and SASL.

A group of :class:`streams.settings.Settings`; read only through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator


class SecuritySettings(BaseModel):
    """Broker security (docs/operating.md); half a configuration fails at start-up."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How every client talks to the brokers: TLS (SSL), SASL authentication "
        "(SASL_PLAINTEXT), both (SASL_SSL) or neither (docs/operating.md).",
    )
    ssl_cafile: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the brokers' certificates; unset = the "
        "system's trusted CAs.",
    )
    ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (with ssl_keyfile)."
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="Unencrypted PEM private key of ssl_certfile."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism; the SCRAM ones never send the password."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password.")

    @model_validator(mode="after")
    def _security_is_complete(self) -> Self:
        # Half-configured security must fail at startup, not connect in plain text
        # or hang on a broker that expects a handshake.
        protocol = self.security_protocol
        sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        if sasl and not (self.sasl_username and password):
            raise ValueError(f"security_protocol {protocol} needs sasl_username and sasl_password")
        if not sasl and (self.sasl_username or password):
            raise ValueError(
                f"sasl_username/sasl_password are set but security_protocol is {protocol}; "
                "use SASL_PLAINTEXT or SASL_SSL"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile needs ssl_keyfile, and ssl_keyfile ssl_certfile")
        if protocol not in ("SSL", "SASL_SSL") and (self.ssl_cafile or self.ssl_certfile):
            raise ValueError(
                f"ssl_* files are set but security_protocol {protocol} does not use TLS; "
                "use SSL or SASL_SSL"
            )
        return self
