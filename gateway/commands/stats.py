"""``vogateway stats [URL]``: throughput and counts of a running gateway, read from its ``/metrics`` twice,
``--interval`` seconds apart (rates are the difference over that time)."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

DEFAULT_URL = "http://127.0.0.1:8080"


def parse_metrics(text: str) -> dict[str, dict[tuple, float]]:
    """Prometheus text -> {sample name: {sorted label items: value}}."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _total(samples, name: str) -> float:
    return sum(samples.get(name, {}).values())


def _by(samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels).get(label, ""): value for labels, value in samples.get(name, {}).items()}


def _mean(samples, name: str) -> str:
    count, total = _total(samples, f"{name}_count"), _total(samples, f"{name}_sum")
    return f"mean {total / count * 1000:.1f} ms over {count:.0f}" if count else "none yet"


def report(first, second, seconds: float, url: str) -> str:
    """The lines ``vogateway stats`` prints from two scrapes ``seconds`` apart."""
    def rate(name: str, **label) -> str:
        def value(samples):
            if not label:
                return _total(samples, name)
            (key, wanted), = label.items()
            return _by(samples, name, key).get(wanted, 0.0)
        return f"{value(second):.0f} ({(value(second) - value(first)) / seconds:.1f}/s)"

    def parts(name: str, label: str) -> str:
        return ", ".join(f"{key} {rate(name, **{label: key})}" for key in sorted(_by(second, name, label)))

    version = next(iter(_by(second, "vogateway_info", "version")), "?")
    lines = [f"vogateway {version} at {url}: up {_total(second, 'vogateway_uptime_seconds'):.0f} s",
             f"alerts in    {rate('vogateway_alerts_in_total')}" + (f": {parts('vogateway_alerts_in_total', 'source')}"
                                                                     if second.get("vogateway_alerts_in_total") else ""),
             f"alerts out   {parts('vogateway_alerts_out_total', 'sink') or 'none'}",
             f"duplicates   {_total(second, 'vogateway_duplicates_total'):.0f}"]
    rejects = _by(second, "vogateway_rejects_total", "reason")
    lines.append(f"rejects      {sum(rejects.values()):.0f}" + (
        " (" + "; ".join(f"{n:.0f} {why}" for why, n in sorted(rejects.items())) + ")" if rejects else ""))
    if "vogateway_vtp_subscribers" in second:
        lines.append(f"subscribers  {_total(second, 'vogateway_vtp_subscribers'):.0f}: "
                     f"sent {rate('vogateway_vtp_sent_total')}, acks {_total(second, 'vogateway_vtp_acks_total'):.0f}, "
                     f"naks {_total(second, 'vogateway_vtp_naks_total'):.0f}, "
                     f"missed {_total(second, 'vogateway_vtp_missed_total'):.0f}")
    depth, age = _by(second, "vogateway_outbox_depth", "route"), _by(second, "vogateway_outbox_age_seconds", "route")
    failed = _by(second, "vogateway_outbox_failed", "route")
    for route in sorted(depth):
        lines.append(f"outbox       {route}: {depth[route]:.0f} waiting (oldest {age.get(route, 0):.0f} s), "
                     f"{failed.get(route, 0):.0f} failed")
    lines += [f"TAP queries  {_total(second, 'vogateway_tap_query_seconds_count'):.0f} "
              f"({_mean(second, 'vogateway_tap_query_seconds')})",
              f"latency      arrival -> broadcast {_mean(second, 'vogateway_broadcast_latency_seconds')}; "
              f"arrival -> queryable {_mean(second, 'vogateway_queryable_latency_seconds')}"]
    return "\n".join(lines)


def _fetch(reactor, url: str):
    from twisted.web.client import Agent, readBody

    def body(response):
        if response.code != 200:
            raise RuntimeError(f"{url} answered HTTP {response.code}, not metrics: is this a vogateway?")
        return readBody(response)
    return Agent(reactor, connectTimeout=10).request(b"GET", url.encode()).addCallback(body)


def stats_command(args: argparse.Namespace) -> int:
    from twisted.internet import defer, task

    base = (args.url or DEFAULT_URL).rstrip("/")
    if "://" not in base:
        base = "http://" + base
    url = base if base.endswith("/metrics") else base + "/metrics"
    outcome = {"status": 1}

    @defer.inlineCallbacks
    def main(reactor):
        try:
            first = parse_metrics((yield _fetch(reactor, url)).decode())
            yield task.deferLater(reactor, args.interval, lambda: None)
            second = parse_metrics((yield _fetch(reactor, url)).decode())
        except ValueError as error:  # the parser's word for text that is not the Prometheus format
            print(f"vogateway stats: {url} did not answer in the Prometheus text format ({error})", file=sys.stderr)
            return
        except Exception as error:  # noqa: BLE001  connection refused, DNS, timeout, HTTP status: one sentence
            why = getattr(error, "reasons", None)
            text = why[0].getErrorMessage() if why else (str(error) or type(error).__name__)
            print(f"vogateway stats: cannot read {url}: {text}", file=sys.stderr)
            return
        print(report(first, second, args.interval, base))
        outcome["status"] = 0

    from twisted.internet import reactor  # here, not at the top: importing it installs the default reactor

    reactor.callWhenRunning(lambda: main(reactor).addBoth(lambda _: reactor.stop()))
    reactor.run()
    return outcome["status"]


def cmd_stats(args: argparse.Namespace) -> int:
    return stats_command(args)


def register(commands) -> None:
    stats = commands.add_parser("stats", help="throughput and counts of a running gateway (from its /metrics)",
                                description="Read a running gateway's /metrics twice, INTERVAL seconds apart, and "
                                            "print its counts and rates: alerts in and out, rejects, duplicates, "
                                            "subscribers, outbox, TAP queries, latencies.")
    stats.add_argument("url", nargs="?", metavar="URL", help=f"the gateway's HTTP address (default {DEFAULT_URL})")
    stats.add_argument("--interval", type=float, default=2.0, metavar="S",
                       help="seconds between the two reads the rates come from (default 2)")
    stats.set_defaults(handler=cmd_stats)
