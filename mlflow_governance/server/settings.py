"""The governance server's configuration, read from the environment once per process.

Environment variables:
    MLFLOW_GOVERNANCE_AUTH: ``basic`` (default: MLflow's basic-auth users and passwords) or
        ``trusted-header`` (a reverse proxy authenticates and sends ``X-Forwarded-User``).
    MLFLOW_GOVERNANCE_TRUSTED_PROXIES: Comma-separated IP addresses or CIDR networks of the
        proxies whose ``X-Forwarded-User``/``X-Forwarded-Groups`` are believed; required in
        ``trusted-header`` mode, ignored otherwise.
    MLFLOW_FLASK_SERVER_SECRET_KEY: Signs the page's session cookie (its CSRF token); the
        same value on every worker and server process. Required in both modes.
    MLFLOW_GOVERNANCE_MAX_BODY_BYTES: The largest request body, in bytes, the governance
        routes and MLflow's model-registry routes accept (default 1 MiB, 1048576); a
        larger one is answered with HTTP 413 before it is parsed.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from mlflow_governance.exceptions import ConfigurationError

ENV_AUTH = "MLFLOW_GOVERNANCE_AUTH"
ENV_TRUSTED_PROXIES = "MLFLOW_GOVERNANCE_TRUSTED_PROXIES"
ENV_SECRET_KEY = "MLFLOW_FLASK_SERVER_SECRET_KEY"
ENV_MAX_BODY_BYTES = "MLFLOW_GOVERNANCE_MAX_BODY_BYTES"

#: A registry or governance call is a small JSON document (a policy file is bounded far
#: below this); anything larger would only hold a database transaction open.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

AUTH_BASIC = "basic"
AUTH_TRUSTED_HEADER = "trusted-header"
AUTH_MODES = (AUTH_BASIC, AUTH_TRUSTED_HEADER)

#: The headers a trusted proxy sets.
USER_HEADER = "X-Forwarded-User"
GROUPS_HEADER = "X-Forwarded-Groups"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Settings:
    """What the server needs to know before its first request.

    Attributes:
        auth: ``basic`` or ``trusted-header``.
        trusted_proxies: Networks whose identity headers are believed (trusted-header mode).
        secret_key: The Flask secret key (session cookie and CSRF token).
        max_body_bytes: The largest request body the governed routes accept.
    """

    auth: str = AUTH_BASIC
    trusted_proxies: tuple[Network, ...] = ()
    secret_key: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings.

        Args:
            environ: The environment to read (``os.environ`` by default).

        Returns:
            The settings.

        Raises:
            ConfigurationError: An unknown auth mode, a malformed proxy address, no proxies
                in trusted-header mode, no secret key, or a body limit that is not a
                positive number of bytes; the message says what to set.
        """
        env = os.environ if environ is None else environ
        auth = (env.get(ENV_AUTH) or AUTH_BASIC).strip().lower()
        if auth not in AUTH_MODES:
            raise ConfigurationError(
                f"{ENV_AUTH}={env.get(ENV_AUTH)!r} is not an authentication mode "
                f"(valid: {', '.join(AUTH_MODES)})."
            )
        proxies = parse_networks(env.get(ENV_TRUSTED_PROXIES, ""))
        if auth == AUTH_TRUSTED_HEADER and not proxies:
            raise ConfigurationError(
                f"{ENV_AUTH}=trusted-header needs {ENV_TRUSTED_PROXIES}: the comma-separated "
                "addresses or networks of the proxies allowed to send X-Forwarded-User, "
                "e.g. 127.0.0.1 or 10.0.0.0/24. Every other peer is refused."
            )
        secret = env.get(ENV_SECRET_KEY, "")
        if not secret:
            raise ConfigurationError(
                f"Set {ENV_SECRET_KEY} to a long random value (the same for every worker and "
                "server process): it signs the session that carries the approval page's "
                "CSRF token."
            )
        return cls(
            auth=auth,
            trusted_proxies=proxies,
            secret_key=secret,
            max_body_bytes=parse_byte_count(env.get(ENV_MAX_BODY_BYTES, "")),
        )

    def is_trusted_peer(self, address: str | None) -> bool:
        """Whether ``address`` (the TCP peer) is one of the trusted proxies."""
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.trusted_proxies)


def parse_networks(text: str) -> tuple[Network, ...]:
    """Parse ``"127.0.0.1, 10.0.0.0/24"`` into networks (a bare address is a /32 or /128).

    Raises:
        ConfigurationError: An entry is neither an address nor a network.
    """
    networks = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"{ENV_TRUSTED_PROXIES}: {item!r} is neither an IP address nor a CIDR network "
                "(e.g. 127.0.0.1, ::1 or 10.0.0.0/24)."
            ) from None
    return tuple(networks)


def parse_byte_count(text: str) -> int:
    """Parse the body limit: a positive whole number of bytes; empty means the default.

    Raises:
        ConfigurationError: Not a positive whole number.
    """
    value = text.strip().replace("_", "")
    if not value:
        return DEFAULT_MAX_BODY_BYTES
    if not value.isdigit() or len(value) > 18 or int(value) < 1:
        raise ConfigurationError(
            f"{ENV_MAX_BODY_BYTES}={text!r} is not a positive number of bytes "
            f"(e.g. {DEFAULT_MAX_BODY_BYTES} for 1 MiB, the default)."
        )
    return int(value)


def parse_groups(header: str | None) -> frozenset[str]:
    """Split an ``X-Forwarded-Groups`` value (comma-separated) into group names."""
    if not header:
        return frozenset()
    return frozenset(part.strip() for part in header.split(",") if part.strip())
