"""Where a partner webhook may go: no request forgery against our own network.

An endpoint URL must be `https` and its host must resolve only to public unicast addresses: no
loopback, private (RFC 1918, fc00::/7), link-local, multicast, unspecified, reserved or shared
(100.64/10) address, and never a cloud metadata address (169.254.169.254, fd00:ec2::254). Checked
when the endpoint is registered (422 with a code) and again before every send, after resolving the
name: the POST goes to the address that was checked (the URL's name stays in the Host header and in
TLS, SNI and certificate check included), so a name that resolves elsewhere a moment later (DNS
rebinding) changes nothing.

`NOTIFY_WEBHOOK_ALLOWED_DESTINATIONS` (host names and CIDRs) lifts both rules for what it names:
a listed host name, or an address inside a listed network, may be private and may take `http`.
For tests, the demo and private deployments; empty by default.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from prometheus_client import Counter

from billing_runtime.errors import BillingError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

REFUSED = Counter("billing_webhook_destinations_refused_total", "Webhook destinations refused, by when (register, send) and code", ["stage", "code"])

METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
SHARED = ipaddress.ip_network("100.64.0.0/10")


class DestinationRefused(BillingError):
    status_code = 422
    code = "webhook_url_not_allowed"


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str]
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        hosts, networks = set(), []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def host(self, name: str) -> bool:
        return name.lower().rstrip(".") in self.hosts

    def address(self, address: Address) -> bool:
        return any(address in network for network in self.networks)


@dataclass(frozen=True)
class Target:
    """A checked destination: POST to `url` (the checked address in place of the name) with
    `host` as the Host header and, for https, as the TLS server name."""

    url: str
    host: str
    server_name: str


def public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return public(address.ipv4_mapped)
    if address in METADATA or (isinstance(address, ipaddress.IPv4Address) and address in SHARED):
        return False
    return address.is_global and not (
        address.is_loopback or address.is_private or address.is_link_local or address.is_multicast or address.is_reserved or address.is_unspecified
    )


def _parts(url: str) -> tuple[SplitResult, str]:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise DestinationRefused("the webhook URL cannot be parsed", code="webhook_url_invalid", field="url") from None
    if parts.scheme not in ("https", "http") or not host:
        raise DestinationRefused("the webhook URL must be https://host/...", code="webhook_url_invalid", field="url")
    if parts.username or parts.password:
        raise DestinationRefused("the webhook URL must not carry credentials", code="webhook_url_invalid", field="url")
    return parts, host


async def _resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    addresses: list[Address] = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def check(url: str, allow: AllowList, stage: str) -> Target:
    """The destination `url` may be sent to, resolved now; else `DestinationRefused` (the code says
    why: `webhook_url_not_https`, `webhook_url_unresolvable`, `webhook_url_not_allowed`). Every
    address the name resolves to must pass, not only the first."""
    try:
        parts, host = _parts(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        named = allow.host(host)
        addresses = await _resolve(host, port)
        if not addresses:
            raise DestinationRefused(f"the webhook host {host!r} does not resolve", code="webhook_url_unresolvable", field="url")
        allowed = named or all(allow.address(a) for a in addresses)
        if parts.scheme != "https" and not allowed:
            raise DestinationRefused("the webhook URL must be https", code="webhook_url_not_https", field="url")
        if not allowed and not all(public(a) or allow.address(a) for a in addresses):
            raise DestinationRefused(
                "the webhook URL must reach a public address (not loopback, private, link-local, multicast or metadata)",
                code="webhook_url_not_allowed",
                field="url",
            )
    except DestinationRefused as refused:
        REFUSED.labels(stage, refused.code).inc()
        raise
    chosen = addresses[0]
    literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = f"{literal}:{port}"
    pinned = parts._replace(netloc=netloc).geturl()
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    return Target(pinned, host_header, host)
