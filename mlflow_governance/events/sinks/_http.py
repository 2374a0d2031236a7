"""One HTTP POST to a URL the policy names, to the address that was checked.

A webhook URL comes from whoever may apply a policy, and the dispatcher runs inside the
network of the registry. Without care, ``https://metadata.internal/...`` or a name that
resolves to ``127.0.0.1`` would let a policy author make the server send requests to
internal services (server-side request forgery). So the host is resolved once, every
address it resolves to is checked, and the connection is made to a checked address while
TLS still verifies the certificate against the host name. Checking first and letting the
HTTP library resolve again would leave a window for a DNS answer that changes in between
(DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from mlflow_governance.events.sinks.base import DeliveryError

#: ``connect,read`` seconds, or one number for both (default ``5,10``).
ENV_TIMEOUT = "MLFLOW_GOVERNANCE_SINK_TIMEOUT"
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 10.0)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def timeouts() -> tuple[float, float]:
    """The connect and read timeouts of an HTTP delivery.

    Raises:
        DeliveryError: ``MLFLOW_GOVERNANCE_SINK_TIMEOUT`` is not one or two positive numbers.
    """
    raw = os.environ.get(ENV_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        values = [float(part) for part in raw.split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) <= 0:
        raise DeliveryError(
            f"{ENV_TIMEOUT}={raw!r} is not a timeout; write seconds as 'connect,read' "
            "(e.g. 5,10) or one number for both"
        )
    return values[0], values[1]


def forbidden_reason(address: IPAddress) -> str | None:
    """Why an address is not a public one a webhook may reach, or ``None`` if it is.

    IPv6 forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, 6to4, Teredo) are
    judged by the IPv4 address they reach as well, since that is where packets go.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour]
        if address.teredo is not None:
            embedded.extend(address.teredo)
        for inner in embedded:
            if inner is not None:
                reason = forbidden_reason(inner)
                if reason is not None:
                    return f"{reason} (inside {address})"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        # What remains and is still not global: shared address space (100.64.0.0/10) and
        # the like, which reach carrier or cloud internals rather than the internet.
        ("non-public", not address.is_global),
    )
    for name, applies in checks:
        if applies:
            return f"{address} is a {name} address"
    return None


@dataclass(frozen=True)
class Target:
    """A URL split into what the connection needs.

    Attributes:
        scheme: ``http`` or ``https``.
        host: The host name (or literal address) as written, without brackets.
        port: The port, explicit or the scheme's default.
    """

    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the name as written, with the port when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(url: str, *, allow_insecure: bool, shown: str) -> Target:
    """Check the URL's form: ``https`` (or ``http`` when allowed) with a host.

    Raises:
        DeliveryError: Permanent; the policy must change.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DeliveryError(f"{shown} is not a valid URL: {exc}", permanent=True) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError(f"{shown} is not an http(s) URL with a host", permanent=True)
    if parts.scheme == "http" and not allow_insecure:
        raise DeliveryError(
            f"refused {shown}: http:// sends events unencrypted; use https:// or set "
            "allow_insecure: true for a local receiver",
            permanent=True,
        )
    default = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default)


def resolve(target: Target, *, allow_insecure: bool, shown: str) -> list[str]:
    """The addresses to connect to, every one of them checked.

    Raises:
        DeliveryError: Permanent when the name resolves to an address that is not public
            (one bad address refuses the lot: a name that mixes them is suspect); transient
            when the name does not resolve now.
    """
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise DeliveryError(f"cannot resolve the host of {shown}: {exc}") from exc
    addresses: list[str] = []
    for info in infos:
        # The scope of a link-local IPv6 address ("fe80::1%eth0") is not part of it.
        text = str(info[4][0]).split("%", 1)[0]
        if text in addresses:
            continue
        if not allow_insecure:
            reason = forbidden_reason(ipaddress.ip_address(text))
            if reason is not None:
                raise DeliveryError(
                    f"refused {shown}: {target.host} resolves to {reason}; only public "
                    "addresses are reached unless the destination sets allow_insecure: true",
                    permanent=True,
                )
        addresses.append(text)
    if not addresses:
        raise DeliveryError(f"cannot resolve the host of {shown}: no address")
    return addresses


class _PinnedAdapter(HTTPAdapter):
    """Connects to one given address whatever the URL's host resolves to now.

    TLS keeps the host name for SNI and for checking the certificate, so pinning the
    address weakens nothing that https promises.
    """

    def __init__(self, address: str, host: str) -> None:
        self._address = address
        self._host = host
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        host_params["host"] = self._address
        if host_params.get("scheme") == "https":
            pool_kwargs["server_hostname"] = self._host
            pool_kwargs["assert_hostname"] = self._host
        return host_params, pool_kwargs


def _verify() -> bool | str:
    # The session ignores the environment (see post()), but a private CA bundle is still
    # a deployment's business.
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    allow_insecure: bool,
    shown: str,
) -> requests.Response:
    """POST ``body`` to ``url`` and classify the outcome.

    Args:
        url: The destination.
        body: The request body.
        headers: Extra headers (``Content-Type`` and the like).
        allow_insecure: Permit ``http://`` and addresses that are not public.
        shown: How to name the destination in messages (a Slack URL is a secret).

    Returns:
        The response, when it is a 2xx.

    Raises:
        DeliveryError: Permanent for a URL or address the rules refuse; transient for
            connection failures, timeouts, redirects (never followed) and non-2xx answers.
    """
    target = parse_target(url, allow_insecure=allow_insecure, shown=shown)
    addresses = resolve(target, allow_insecure=allow_insecure, shown=shown)
    timeout = timeouts()
    last: Exception | None = None
    for address in addresses:
        with requests.Session() as session:
            # No proxies from the environment: a proxy would resolve the name again, out
            # of reach of the address check.
            session.trust_env = False
            session.mount(f"{target.scheme}://", _PinnedAdapter(address, target.host))
            try:
                response = session.post(
                    url,
                    data=body,
                    headers={**headers, "Host": target.host_header},
                    timeout=timeout,
                    allow_redirects=False,
                    verify=_verify(),
                )
            except requests.ConnectionError as exc:
                # Includes connect timeouts; the next address may answer (e.g. a name with
                # both IPv6 and IPv4 addresses where only one is served).
                last = exc
                continue
            except requests.RequestException as exc:
                raise DeliveryError(f"{shown}: {type(exc).__name__}: {exc}") from exc
            _check_status(response, shown)
            return response
    raise DeliveryError(f"{shown}: cannot connect: {last}") from last


def _check_status(response: requests.Response, shown: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    excerpt = response.text[:200].strip()
    detail = f": {excerpt}" if excerpt else ""
    if 300 <= status < 400:
        raise DeliveryError(
            f"{shown} answered {status} redirecting to {response.headers.get('Location')!r}; "
            "redirects are not followed, configure the final URL"
        )
    if status == 429 or status >= 500:
        raise DeliveryError(f"{shown} answered {status} (will retry){detail}")
    raise DeliveryError(
        f"{shown} refused the event with {status}{detail}; retrying in case the receiver is "
        "fixed, but this usually needs a change there"
    )
