"""``vogateway convert``: Avro alerts (files, directories, a wire packet on stdin) -> one VOEvent file each.

A batch never stops on a bad packet: each rejection is logged with its source, position and reason, counted,
and the rest is converted. Exit status 0 when everything converted, 1 when anything was rejected.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Iterable, Iterator, Union

from tqdm import tqdm

from gateway import config as configuration
from gateway.alerts import Alert, AlertError
from gateway.alerts.decode import decode_wire
from gateway.alerts.files import iter_inputs
from gateway.alerts.schemas import SchemaLibrary
from gateway.pipeline import Stats
from gateway.sinks import file_name
from gateway.voevent.build import Converter


def _typed(config: Union[configuration.Config, Mapping]) -> configuration.Config:
    """A typed config as it is; a raw document (``config.defaults()``, as tests and benchmarks pass) checked."""
    return config if isinstance(config, configuration.Config) else configuration.parse(config)


def make_converter(config: configuration.Config, history=None) -> Converter:
    """The Alert -> Event converter named by ``[gateway]``; ``history`` remembers each object's latest IVORN."""
    gateway = _typed(config).gateway
    return Converter(gateway.authority, gateway.stream, gateway.public_url, role=gateway.role, history=history)


def make_schema_library(config: configuration.Config) -> SchemaLibrary:
    return SchemaLibrary(registry_url=_typed(config).sources.schema_registry or None)


def read_inputs(config: configuration.Config, inputs: Iterable[str], stdin=None) -> Iterator[Union[Alert, AlertError]]:
    """Alerts and rejections from every input, in order; ``-`` is one wire-format packet on stdin."""
    config = _typed(config)
    paths = []
    for name in inputs:
        if name != "-":
            paths.append(name)
            continue
        if paths:
            yield from iter_inputs(paths)
            paths = []
        data = (stdin or sys.stdin.buffer).read(config.sources.max_packet_bytes + 1)
        try:
            yield decode_wire(data, "stdin", 0, make_schema_library(config))
        except AlertError as error:
            yield error
    if paths:
        yield from iter_inputs(paths)


def convert_inputs(config: configuration.Config, inputs: Iterable[str], output_dir: Path, quiet: bool = False, stdin=None) -> int:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    convert = make_converter(config)
    stats = Stats()
    with tqdm(read_inputs(config, inputs, stdin), unit=" alerts", disable=quiet or None, file=sys.stderr) as bar:
        for item in bar:
            if isinstance(item, AlertError):
                stats.reject(item)
                bar.write(f"rejected: {item}", file=sys.stderr)
                continue
            try:
                event = convert(item)
            except AlertError as error:
                stats.reject(error)
                bar.write(f"rejected: {error}", file=sys.stderr)
                continue
            (output_dir / file_name(event)).write_bytes(event.xml)
            stats.converted += 1
    print(f"vogateway convert: {stats.summary()}; wrote {output_dir}", file=sys.stderr)
    return 1 if stats.rejected_total else 0
