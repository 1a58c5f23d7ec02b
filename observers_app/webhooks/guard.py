"""The SSRF guard: which URLs and addresses a webhook may reach, decided before any connection."""

import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from .. import conf
from ..exceptions import InvalidWebhook, WebhookRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 ranges that carry an IPv4 address a host may end up reaching: NAT64 (RFC 6052) and 6to4.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
URL_MAX_LENGTH = 2048  # WebhookEndpoint.url's


@dataclass(frozen=True)
class Allowlist:
    """OBSERVERS_WEBHOOK_ALLOW parsed: host names, and addresses as one-address networks."""

    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    def allows_host(self, host: str) -> bool:
        return normalize_host(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks if network.version == address.version)


def normalize_host(host: str) -> str:
    return host.lower().rstrip(".")


def parse_allowlist(entries: list[str] | tuple[str, ...]) -> Allowlist:
    """Each entry an address, a CIDR network or a host name; raises InvalidWebhook on anything else."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        host = normalize_host(str(entry))
        labels = host.split(".")
        if not host or not all(
            label and len(label) <= 63 and label.replace("-", "").isalnum() for label in labels
        ):
            raise InvalidWebhook(
                f"OBSERVERS_WEBHOOK_ALLOW entry {entry!r} is no address, CIDR network or host name"
            )
        hosts.add(host)
    return Allowlist(frozenset(hosts), tuple(networks))


@lru_cache(maxsize=8)
def _cached_allowlist(entries: tuple[str, ...]) -> Allowlist:
    return parse_allowlist(entries)


def allowlist() -> Allowlist:
    return _cached_allowlist(tuple(conf.webhook_allow()))


def refusal_reason(address: IPAddress) -> str | None:
    """Why the guard refuses to connect to ``address`` by default, or None for a public address.

    IPv4 inside IPv6 (IPv4-mapped, NAT64, 6to4) is judged as the IPv4 address it carries."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal_reason(embedded)
    for reason, refused in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if refused:
            return reason
    if not address.is_global:
        return "not globally routable"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def vetted_address(host: str, port: int) -> str:
    """Resolve ``host`` once and return the address to connect to; raise WebhookRefused if any of
    its addresses is refused (a name pointing at both public and internal addresses is refused)."""
    allowed = allowlist()
    addresses = resolve(host, port)
    if allowed.allows_host(host):
        return str(addresses[0])
    for address in addresses:
        plain = _embedded_ipv4(address) or address
        reason = refusal_reason(address)
        if reason and not allowed.allows_address(plain):
            shown = host if host == str(plain) else f"{host} ({plain})"
            raise WebhookRefused(
                f"webhook address {shown} is {reason}; list it in OBSERVERS_WEBHOOK_ALLOW to reach it"
            )
    return str(addresses[0])


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host``: OBSERVERS_WEBHOOK_RESOLVE's answer for it, else the system resolver's."""
    pinned = conf.webhook_resolve().get(normalize_host(host))
    if pinned:
        return [ipaddress.ip_address(address) for address in pinned]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConnectionError(f"cannot resolve webhook host {host!r}: {exc}") from exc
    # An IPv6 scope ("fe80::1%eth0") is dropped: the address itself decides.
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check_url(url: str, *, resolve_now: bool = True) -> str:
    """Refuse a URL the guard would refuse at delivery, as far as can be told now; returns it.

    A host name that does not resolve yet is accepted: the guard checks it again at every connection."""
    if len(url) > URL_MAX_LENGTH:
        raise InvalidWebhook(f"webhook URL is {len(url)} characters long; the limit is {URL_MAX_LENGTH}")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidWebhook(f"webhook URL {url!r} must be an absolute http(s) URL")
    if parts.scheme == "http" and not conf.webhook_allow_http():
        raise WebhookRefused(
            f"webhook URL {url!r} is not https; set OBSERVERS_WEBHOOK_ALLOW_HTTP = True to allow plain http"
        )
    if parts.username or parts.password:
        raise InvalidWebhook(f"webhook URL {url!r} carries credentials; sign with the secret instead")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidWebhook(f"webhook URL {url!r} has an invalid port") from exc
    if resolve_now:
        with contextlib.suppress(ConnectionError):
            vetted_address(parts.hostname, port)
    return url
