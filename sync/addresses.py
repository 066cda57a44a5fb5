"""Which addresses groundlabel connects to for a URL it did not choose (a task's image, a redirect, Label Studio's URL).

A URL's host is resolved first and every address it resolves to is judged before any connection is made:

- never: link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata services (169.254.169.254,
  fd00:ec2::254 on AWS's IPv6, 100.100.100.200 on Alibaba, 192.0.0.192 on Oracle), also when written as a number,
  as IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or 6to4 IPv6;
- private and other non-public addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, ...): only the
  configured Label Studio host, and hosts listed in ``GROUNDLABEL_ALLOWED_HOSTS`` (names, addresses or networks,
  comma-separated: ``minio.internal,10.20.0.0/16``), e.g. a MinIO that presigned URLs point at;
- loopback (127.0.0.0/8, ::1): allowed, the app's own machine (a Label Studio or image store beside it);
- public addresses: allowed.

The HTTP client resolves the name again when it connects: a DNS server that answers differently the second time
(DNS rebinding) is not covered.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class AddressPolicy:
    """``allowed``: hosts (names or addresses) and networks whose private addresses may be fetched."""

    allowed: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> AddressPolicy:
        """``GROUNDLABEL_ALLOWED_HOSTS``: comma-separated names, addresses and networks (a bad network fails here)."""
        entries = tuple(part.strip().lower() for part in (text or "").split(",") if part.strip())
        for entry in entries:
            if "/" in entry:
                ipaddress.ip_network(entry, strict=False)  # ValueError names the entry
        return cls(entries)

    def refusal(self, url: str, trusted_host: str | None = None) -> str | None:
        """Why ``url`` must not be fetched (a sentence), or None. ``trusted_host``: the configured Label Studio's
        host name, whose private addresses are allowed. Unknown hosts and bad ports pass: the request says so."""
        try:
            host = (urlsplit(url).hostname or "").lower()
            if not host:
                return None
            infos = socket.getaddrinfo(host, urlsplit(url).port or 0, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError):
            return None
        for address in _unwrapped(ipaddress.ip_address(sockaddr[0].split("%")[0]) for *_, sockaddr in infos):
            if address in METADATA or address.is_link_local:
                kind = "a link-local address" if address.is_link_local else "a cloud metadata address"
                return (
                    f"{address} is {kind}, where cloud metadata services hand out credentials "
                    "(link-local and metadata addresses are never fetched)"
                )
            if address.is_loopback or address.is_global or host == trusted_host or self._allows(host, address):
                continue
            return (
                f"{host} resolves to the private address {address}; add it to GROUNDLABEL_ALLOWED_HOSTS "
                "if groundlabel should fetch from there"
            )
        return None

    def _allows(self, host: str, address: Address) -> bool:
        for entry in self.allowed:
            if "/" in entry:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            elif entry in (host, str(address)):
                return True
        return False


def _unwrapped(addresses: Iterable[Address]) -> Iterable[Address]:
    """Each address, and the IPv4 address an IPv6 one carries (mapped, NAT64, 6to4) instead of it."""
    for address in addresses:
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped:
                address = address.ipv4_mapped
            elif address in _NAT64:
                address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            elif address.sixtofour:
                address = address.sixtofour
        yield address
