"""How a local Apache Kafka's client listener authenticates clients: SASL, TLS, both or neither.

For trying clients against a secured broker on one machine, as the integration
tests do (docs/operating.md#securing-a-cluster). SASL/PLAIN keeps the passwords in
the broker's config file, which suits a local test broker only.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule required"


@dataclass(frozen=True)
class ListenerSecurity:
    """The client listener's security; the default lets anyone in over plain text.

    The broker connects to itself like a client: as the first of ``sasl_users``,
    presenting its own certificate.

    Attributes:
        sasl_users: SASL/PLAIN accounts, name -> password.
        tls_keystore: The broker's unencrypted private key and certificate chain in
            one PEM file. With it the listener speaks TLS and asks each client for a
            certificate signed by a CA of ``tls_truststore``.
        tls_truststore: PEM file of the CAs the broker trusts.
    """

    sasl_users: Mapping[str, str] = field(default_factory=dict)
    tls_keystore: Path | None = None
    tls_truststore: Path | None = None

    def __post_init__(self) -> None:
        if (self.tls_keystore is None) != (self.tls_truststore is None):
            raise ValueError("tls_keystore and tls_truststore go together")

    @property
    def protocol(self) -> str:
        """Kafka's name for it: PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL."""
        sasl = "SASL_" if self.sasl_users else ""
        return f"{sasl}SSL" if self.tls_keystore else f"{sasl}PLAINTEXT"

    def properties(self, port: int) -> dict[str, str]:
        """Broker properties of a client listener on ``port`` (the controller's is ``port + 1``).

        Examples:
            >>> ListenerSecurity().properties(9192)["listeners"]
            'PLAINTEXT://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193'
        """
        protocol = self.protocol
        values = {
            "listeners": f"{protocol}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}",
            "advertised.listeners": f"{protocol}://127.0.0.1:{port}",
            "listener.security.protocol.map": f"{protocol}:{protocol},CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": protocol,
        }
        if self.sasl_users:
            (name, password), *_ = self.sasl_users.items()
            accounts = " ".join(
                f'user_{user}="{secret}"' for user, secret in self.sasl_users.items()
            )
            values |= {
                "sasl.enabled.mechanisms": "PLAIN",
                "sasl.mechanism.inter.broker.protocol": "PLAIN",
                f"listener.name.{protocol.lower()}.plain.sasl.jaas.config": (
                    f'{_PLAIN_LOGIN} username="{name}" password="{password}" {accounts};'
                ),
            }
        if self.tls_keystore and self.tls_truststore:
            values |= {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.tls_keystore),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.tls_truststore),
                "ssl.client.auth": "required",
            }
        return values

    def client_options(self) -> dict[str, Any]:
        """kafka-python arguments that get a client in (the readiness probe uses them)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl_users:
            (name, password), *_ = self.sasl_users.items()
            options |= {
                "sasl_mechanism": "PLAIN",
                "sasl_plain_username": name,
                "sasl_plain_password": password,
            }
        if self.tls_keystore and self.tls_truststore:
            # A context, not kafka-python's ssl_* files: it would build its own with
            # the deprecated ssl.PROTOCOL_TLS, and no minimum TLS version.
            context = ssl.create_default_context(cafile=self.tls_truststore)
            context.load_cert_chain(self.tls_keystore)
            options["ssl_context"] = context
        return options
