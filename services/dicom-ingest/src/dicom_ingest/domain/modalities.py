"""Modalities: which calling AE title, from which address, sends studies for which organisation.

An A-ASSOCIATE-RQ is accepted only when its Calling AE Title, and its source address when the
registration names a host, match a registered modality; the association's instances then belong
to that modality's organisation, and its queries and retrievals see that organisation's studies
only. Anything else is rejected at association time (PS3.8 §9.3.4).

A registration with a port (and a host that is one address) is also a C-MOVE destination of its
organisation: the Move Destination AE title of a C-MOVE request (PS3.4 §C.4.2.1.3) is looked up
among the caller's organisation's registrations, never anyone else's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from uuid import UUID

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

#: PS3.5 Table 6.2-1, VR AE: at most 16 characters.
AE_TITLE_MAX_LENGTH = 16
#: The TCP ports a move destination may listen on.
PORT_RANGE = range(1, 65536)
_IPV4_MAPPED = IPv6Network("::ffff:0:0/96")


def normalize_ae_title(value: str) -> str:
    """The AE title without its non-significant leading and trailing spaces.

    PS3.5 §6.2 (VR AE): at most 16 characters of the Default Character Repertoire (printable
    ISO-IR 6), excluding the backslash and all control characters; spaces at either end are not
    significant, so a value of spaces only names no AE.

    Raises
    ------
    ValueError
        When the value breaks one of those rules.
    """
    title = value.strip(" ")
    if not title:
        raise ValueError("an AE title needs at least one character other than a space")
    if len(title) > AE_TITLE_MAX_LENGTH:
        raise ValueError(f"an AE title has at most {AE_TITLE_MAX_LENGTH} characters")
    if "\\" in title:
        raise ValueError("an AE title may not contain a backslash")
    if any(not " " <= c <= "~" for c in title):
        raise ValueError("an AE title holds only printable ASCII characters (no control characters)")
    return title


def parse_host(value: str | None) -> Network | None:
    """The address or CIDR network a modality must call from; None when any address will do.

    A bare address is the network of that one address (``/32`` or ``/128``). Host bits set beside
    a prefix (``10.1.2.3/8``) are refused rather than silently dropped.

    Raises
    ------
    ValueError
        When the value is not an IPv4 or IPv6 address or network.
    """
    if value is None:
        return None
    try:
        network = ip_network(value.strip(), strict=True)
    except ValueError:
        raise ValueError("host must be an IP address or a network in CIDR form, e.g. 10.1.2.0/24") from None
    if isinstance(network, IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        raise ValueError("write an IPv4-mapped IPv6 host in its IPv4 form")
    return network


def parse_port(port: int | None, host: Network | None) -> int | None:
    """The port C-MOVE sub-operations reach the modality on; None when it is no move destination.

    A destination needs an address to connect to, so the host must be one address (``/32`` or
    ``/128``), not a network or absent.

    Raises
    ------
    ValueError
        When the port is outside 1-65535 or the host is not one address.
    """
    if port is None:
        return None
    if isinstance(port, bool) or port not in PORT_RANGE:
        raise ValueError("port must be between 1 and 65535")
    if host is None or host.prefixlen != host.max_prefixlen:
        raise ValueError("a move destination (a registration with a port) needs a host that is one IP address")
    return port


def peer_address(value: str) -> Address | None:
    """The peer's address as the registrations see it (an IPv4-mapped IPv6 peer is its IPv4 address)."""
    try:
        address = ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class Modality:
    id: UUID
    organization_id: UUID
    ae_title: str
    host: Network | None
    description: str
    created_at: datetime
    #: Set when the modality is also a move destination (its host is then one address).
    port: int | None = None

    @property
    def destination(self) -> tuple[str, int] | None:
        """(address, port) that C-MOVE sub-operations connect to; None when it is no move destination."""
        if self.port is None or self.host is None or self.host.prefixlen != self.host.max_prefixlen:
            return None
        return str(self.host.network_address), self.port

    def accepts(self, address: Address | None) -> bool:
        if self.host is None:
            return True
        return address is not None and address.version == self.host.version and address in self.host

    @property
    def specificity(self) -> int:
        """Longer prefixes first; a registration without a host comes last."""
        return -1 if self.host is None else self.host.prefixlen


class ModalityDirectory:
    """An immutable snapshot of the registry that answers which modality an association comes from."""

    def __init__(self, modalities: Iterable[Modality] = ()) -> None:
        by_title: dict[str, list[Modality]] = {}
        destinations: dict[tuple[UUID, str], Modality] = {}
        for modality in modalities:
            by_title.setdefault(modality.ae_title, []).append(modality)
            if modality.destination is not None:
                destinations.setdefault((modality.organization_id, modality.ae_title), modality)
        self._by_title = {title: tuple(sorted(found, key=lambda m: -m.specificity))
                          for title, found in by_title.items()}
        self._destinations = destinations

    def match(self, calling_ae_title: str, address: str) -> Modality | None:
        """The most specific registration of ``calling_ae_title`` that accepts ``address``; None if none.

        Titles compare exactly (case included) once their non-significant spaces are stripped.
        """
        candidates = self._by_title.get(calling_ae_title.strip(" "), ())
        peer = peer_address(address) if candidates else None
        return next((m for m in candidates if m.accepts(peer)), None)

    def destination(self, organization_id: UUID, move_destination: str) -> Modality | None:
        """The organisation's move destination with that AE title (PS3.4 §C.4.2.1.3); None if it has none.

        Another organisation's registration of the same title is never returned.
        """
        return self._destinations.get((organization_id, move_destination.strip(" ")))

    def __len__(self) -> int:
        return sum(len(found) for found in self._by_title.values())


def conflicting(existing: Iterable[Modality], organization_id: UUID, ae_title: str,
                host: Network | None, port: int | None = None) -> Modality | None:
    """A registration the new one may not sit beside, or None.

    The same AE title and host is registered once, by anyone. The same AE title at an overlapping
    host (no host overlaps every address) may be registered only within one organisation; across
    organisations it would let one tenant receive studies another tenant's modality sends. Within
    an organisation one registration per AE title may carry a port, so a Move Destination names
    one place.
    """
    for modality in existing:
        if modality.ae_title != ae_title:
            continue
        if modality.host == host:
            return modality
        if modality.organization_id != organization_id and _overlap(modality.host, host):
            return modality
        if port is not None and modality.port is not None and modality.organization_id == organization_id:
            return modality
    return None


def _overlap(a: Network | None, b: Network | None) -> bool:
    if a is None or b is None:
        return True
    if a.version != b.version:
        return False
    return a.subnet_of(b) or b.subnet_of(a)  # type: ignore[arg-type]
