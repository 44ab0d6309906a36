"""The VTP services from :class:`~gateway.vtp.settings.VTPSettings`: broker, receiver, subscriber clients.

VTP owns its settings (``gateway/vtp/settings.py``); ``gateway/config.py`` builds them from the file and this
module never reads the config. Unusable values raise :class:`~gateway.vtp.settings.VTPSettingsError` naming the
key; the assembly reports it as a config error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

from twisted.application.internet import StreamServerEndpointService

from gateway.vtp.access import Rule, Whitelist
from gateway.vtp.broker import Broker
from gateway.vtp.receiver import Receiver
from gateway.vtp.settings import VTPSettings, VTPSettingsError
from gateway.vtp.subscriber import subscriber_service
from gateway.vtp.tls import TLSFiles, vtp_server_endpoint


def _whitelist(entries, key: str) -> Whitelist:
    try:
        return Whitelist(entries)
    except ValueError as error:
        raise VTPSettingsError(f"vtp.{key}: {error}") from None


def _rules(tables) -> list[Rule]:
    rules = []
    for number, table in enumerate(tables, 1):
        try:
            if not isinstance(table, Mapping):
                raise ValueError("each rule is a table: {network = ..., filter = ..., max_events = ...}")
            rules.append(Rule.from_config(table))
        except (TypeError, ValueError) as error:
            raise VTPSettingsError(f"vtp.subscriber_rules #{number}: {error}") from None
    return rules


def vtp_services(vtp: VTPSettings, pipeline, reactor, has_ivorn=None) -> tuple[Optional[Broker], list]:
    """(broker sink or None, services to start): the broker on ``vtp.broadcast``, the receiver on ``vtp.receive``,
    one subscriber client per ``vtp.remotes`` entry. The caller adds the broker to the router.

    ``has_ivorn(ivorn) -> bool | Deferred[bool]`` (the store's) makes the receiver's duplicate check persistent;
    without it duplicates are caught by the pipeline's bounded, expiring memory of IVORNs."""
    tls = TLSFiles(vtp.tls_cert, vtp.tls_key, vtp.tls_ca)
    services, broker = [], None
    if vtp.broadcast:
        broker = Broker(vtp.local_ivo, clock=reactor, iamalive_interval=vtp.iamalive_interval,
                        max_frame_bytes=vtp.max_frame_bytes, buffer_bytes=vtp.subscriber_buffer_bytes,
                        buffer_events=vtp.subscriber_buffer_events,
                        whitelist=_whitelist(vtp.subscriber_whitelist, "subscriber_whitelist"),
                        rules=_rules(vtp.subscriber_rules), handshake_timeout=vtp.subscriber_handshake_timeout,
                        frame_timeout=vtp.subscriber_frame_timeout, alive_timeout=vtp.subscriber_alive_timeout)
        broker.noisy = False  # the port already logs "Broker starting on PORT"; no "Starting factory" lines
        service = StreamServerEndpointService(_listening("broadcast", reactor, vtp.broadcast, tls), broker)
        service.setName("vtp-broadcast")
        services.append(service)
    if vtp.receive:
        receiver = Receiver(pipeline, vtp.local_ivo, clock=reactor,
                            whitelist=_whitelist(vtp.author_whitelist, "author_whitelist"),
                            max_frame_bytes=vtp.max_frame_bytes, idle_timeout=vtp.author_idle_timeout,
                            has_ivorn=has_ivorn)
        receiver.noisy = False
        service = StreamServerEndpointService(_listening("receive", reactor, vtp.receive, tls), receiver)
        service.setName("vtp-receive")
        service.receiver = receiver
        services.append(service)
    filters = [vtp.filter] if vtp.filter else []
    for remote in vtp.remotes:
        try:
            services.append(subscriber_service(reactor, remote, pipeline, vtp.local_ivo, filters, tls=tls,
                                               max_frame_bytes=vtp.max_frame_bytes,
                                               alive_timeout=vtp.remote_alive_timeout))
        except (ValueError, OSError) as error:  # the endpoint string, or TLS files that can't be read or used
            raise VTPSettingsError(f"vtp.remotes: {error}") from None
    return broker, services


def _listening(key: str, reactor, description: str, tls: TLSFiles):
    try:
        return vtp_server_endpoint(reactor, description, tls)
    except (ValueError, OSError) as error:  # the endpoint string, or TLS files that can't be read or used
        raise VTPSettingsError(f"vtp.{key}: {error}") from None
