"""Which addresses alert webhooks may call: public ones, plus what ``AXME_GATEWAY_WEBHOOK_ALLOW`` opens.

An org admin chooses webhook URLs, and the gateway usually runs inside a private
network, next to cloud metadata services (``169.254.169.254``) and internal ports.
So a webhook host is resolved first and refused if any of its addresses is not
globally routable (loopback, link-local, private, CGNAT, multicast, reserved,
unspecified; IPv4-mapped IPv6 is unwrapped first); the request then goes to the
checked address itself (Host header and TLS server name keep the hostname), so a
second DNS answer cannot swap in an internal address. An on-premises receiver is
allowed by listing its host name or a CIDR in ``AXME_GATEWAY_WEBHOOK_ALLOW``.

A refusal never connects, so the stored error text cannot reveal anything an
internal address would have answered.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


class RefusedTarget(Exception):
    """The webhook host is internal and not allowed; the message is safe to store in events."""


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _unwrap(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Parsed ``AXME_GATEWAY_WEBHOOK_ALLOW``: host names (exact, case-insensitive) and networks."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressPolicy:
        """``"127.0.0.1, 10.0.0.0/8, hooks.internal"``; raises ``ValueError`` naming a malformed CIDR."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            item = raw.strip().lower()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                if "/" in item or not item.replace("-", "").replace(".", "").replace("_", "").isalnum():
                    raise ValueError(f"AXME_GATEWAY_WEBHOOK_ALLOW: {raw.strip()!r} is neither a host name nor a CIDR") from None
                hosts.add(item.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allowed(self, ip: IPAddress) -> bool:
        ip = _unwrap(ip)
        if any(ip in net for net in self.networks):
            return True
        return ip.is_global and not ip.is_multicast

    def check(self, host: str, port: int, resolve: Resolver = _resolve) -> list[str]:
        """The addresses to connect to for ``host``, in resolver order; raises :class:`RefusedTarget` if internal.

        Every resolved address must pass (a name resolving to one public and one
        private address is refused): connecting to "the public one" would still
        let a resolver that answers differently per query choose the target."""
        name = host.strip("[]").lower().rstrip(".")
        if name in self.hosts:
            return self._resolved(name, port, resolve)
        try:
            literal: IPAddress | None = ipaddress.ip_address(name)
        except ValueError:
            literal = None
        if literal is not None:
            if not self.allowed(literal):
                raise RefusedTarget(f"{name} is not a public address; list it in AXME_GATEWAY_WEBHOOK_ALLOW to allow it")
            return [str(literal)]
        addresses = self._resolved(name, port, resolve)
        for found in addresses:
            if not self.allowed(ipaddress.ip_address(found.split("%", 1)[0])):
                raise RefusedTarget(f"{name} resolves to a non-public address; list it in AXME_GATEWAY_WEBHOOK_ALLOW "
                                    "to allow it")
        return addresses

    @staticmethod
    def _resolved(name: str, port: int, resolve: Resolver) -> list[str]:
        addresses = resolve(name, port)
        if not addresses:
            raise RefusedTarget(f"{name} does not resolve")
        return addresses
