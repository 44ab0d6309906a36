"""Who may connect, and what each subscriber gets: whitelists and per-subscriber rules.

A peer is described by its IP address and, on TLS connections with a client certificate, its identity (the
certificate subject's commonName). Whitelist entries are IP networks (``"10.0.0.0/8"``, ``"::1/128"``) or
identities written ``"cn:NAME"``. Rules (config ``[[vtp.subscriber_rules]]``) give matching subscribers a server-side
filter and a cap of ``max_events`` per ``window`` seconds.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from lxml import etree

#: Cap used by a rule that does not say: the seed's "about 20 alerts per user per 30 s visit".
DEFAULT_MAX_EVENTS = 20
DEFAULT_WINDOW = 30.0  # s


def _address(host: str):
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.1.2.3 on dual-stack sockets
    return mapped or address


class Whitelist:
    """IP networks and TLS identities allowed to connect; ``allows(host, identity)``."""

    def __init__(self, entries: Iterable[str]):
        self.networks, self.identities = [], set()
        for entry in entries:
            entry = entry.strip()
            if entry.lower().startswith("cn:"):
                self.identities.add(entry[3:])
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"whitelist entry {entry!r} is neither an IP network nor cn:NAME") from None
        self.entries = list(entries)

    def allows(self, host: str, identity: Optional[str] = None) -> bool:
        if identity is not None and identity in self.identities:
            return True
        address = _address(host)
        return address is not None and any(address in network for network in self.networks
                                           if network.version == address.version)


def compile_xpath(expression: str) -> Callable:
    """An XPath evaluator; raises ValueError with the reason for invalid syntax."""
    try:
        return etree.XPath(expression)
    except etree.XPathSyntaxError as error:
        raise ValueError(f"invalid XPath {expression!r}: {error}") from None


def admits(xpath, root) -> bool:
    """Does an event pass a compiled XPath? True for a non-empty node set, true boolean, non-zero, non-empty."""
    try:
        return bool(xpath(root))
    except etree.XPathError:
        return False


@dataclass
class Rule:
    """Server-side filter and cap for subscribers matching ``network`` or ``identity`` (first matching rule wins)."""

    network: Optional[str] = None
    identity: Optional[str] = None
    filter: str = ""  # XPath on the VOEvent
    expression: str = ""  # the gateway's filter language (gateway.filters), e.g. "mag < 19 and snr > 10"
    max_events: int = DEFAULT_MAX_EVENTS
    window: float = DEFAULT_WINDOW  # s
    _network: object = field(init=False, repr=False, default=None)
    _xpath: object = field(init=False, repr=False, default=None)
    _expression: object = field(init=False, repr=False, default=None)

    def __post_init__(self):
        if not self.network and not self.identity:
            raise ValueError("a subscriber rule needs a network or an identity")
        if self.network:
            self._network = ipaddress.ip_network(self.network, strict=False)
        if self.filter:
            self._xpath = compile_xpath(self.filter)
        if self.expression:
            from gateway.filters import compile_filter  # the one filter language of the gateway

            self._expression = compile_filter(self.expression)  # FilterError (a ValueError) names the column
        if self.max_events < 0 or self.window <= 0:
            raise ValueError("a subscriber rule needs max_events >= 0 (0: no cap) and window > 0")

    @classmethod
    def from_config(cls, table: dict) -> "Rule":
        unknown = set(table) - {"network", "identity", "filter", "expression", "max_events", "window"}
        if unknown:
            raise ValueError(f"unknown subscriber rule key(s): {', '.join(sorted(unknown))}")
        return cls(**table)

    def matches(self, host: str, identity: Optional[str]) -> bool:
        if self.identity and identity == self.identity:
            return True
        address = _address(host)
        return (self._network is not None and address is not None and address.version == self._network.version
                and address in self._network)

    @property
    def key(self) -> tuple[str, str]:
        """What decides this rule's selection: subscribers with equal keys share one evaluation."""
        return self.filter, self.expression

    def admits(self, root, facts=None) -> bool:
        """Does the event pass the rule's XPath (on ``root``, None if unparseable) and its expression (on
        ``facts``, a :class:`gateway.filters.Facts`)?"""
        if self._xpath is not None and (root is None or not admits(self._xpath, root)):
            return False
        return self._expression is None or (facts is not None and self._expression.matches(facts))

    def limiter(self, clock) -> Optional["RateCap"]:
        return RateCap(self.max_events, self.window, clock) if self.max_events else None


class RateCap:
    """At most ``max_events`` in any sliding ``window`` seconds."""

    def __init__(self, max_events: int, window: float, clock):
        self.max_events, self.window, self.clock = max_events, window, clock
        self._sent: deque[float] = deque()

    def allow(self) -> bool:
        now = self.clock.seconds()
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()
        if len(self._sent) >= self.max_events:
            return False
        self._sent.append(now)
        return True


def rule_for(rules: Iterable[Rule], host: str, identity: Optional[str]) -> Optional[Rule]:
    return next((rule for rule in rules if rule.matches(host, identity)), None)
