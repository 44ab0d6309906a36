"""``vogateway convert``: Avro alerts (files, directories, a wire packet on stdin) -> one VOEvent file each.

A batch never stops on a bad packet: each rejection is logged with its source, position and reason, counted,
and the rest is converted. Exit status 0 when everything converted, 1 when anything was rejected.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

from tqdm import tqdm

from gateway import config as configuration
from gateway.alerts import Alert, AlertError
from gateway.alerts.decode import decode_wire
from gateway.alerts.files import iter_inputs
from gateway.alerts.schemas import SchemaLibrary
from gateway.endpoints import configured_host_port, http_url
from gateway.pipeline import Stats
from gateway.sinks import file_name
from gateway.voevent.build import Converter


def _typed(config: Union[configuration.Config, Mapping]) -> configuration.Config:
    """A typed config as it is; a raw document (``config.defaults()``, as tests and benchmarks pass) checked."""
    return config if isinstance(config, configuration.Config) else configuration.parse(config)


def make_converter(config: configuration.Config, history=None) -> Converter:
    """The Alert -> Event converter named by ``[gateway]``; ``history`` remembers each object's latest IVORN."""
    config = _typed(config)
    gateway = config.gateway
    try:
        return Converter(gateway.authority, gateway.stream, advertised_url(config), role=gateway.role,
                         history=history, author_name=gateway.author_name, author_email=gateway.author_email)
    except ValueError as error:  # the converter names the [gateway] key it refuses
        raise configuration.ConfigError(f"[gateway] {error}") from None


def advertised_url(config: configuration.Config) -> str:
    """Where cutouts are served, from the config: ``public_url``, else the address ``http.listen`` names (serve
    replaces it with the address actually bound)."""
    if config.gateway.public_url:
        return config.gateway.public_url
    named = configured_host_port(config.http.listen) if config.http.listen else None
    return http_url(config.http.listen, *named) if named else ""


def make_schema_library(config: configuration.Config) -> SchemaLibrary:
    return SchemaLibrary(registry_url=_typed(config).sources.schema_registry or None)


def read_inputs(config: configuration.Config, inputs: Iterable[str], stdin=None, not_avro: Optional[list] = None,
                ) -> Iterator[Union[Alert, AlertError]]:
    """Alerts and rejections from every input, in order; ``-`` is one wire-format packet on stdin.

    ``not_avro`` receives the files of input directories left out because they are not Avro (a README, notes).
    """
    config = _typed(config)
    paths = []
    for name in inputs:
        if name != "-":
            paths.append(name)
            continue
        if paths:
            yield from iter_inputs(paths, not_avro=not_avro)
            paths = []
        data = (stdin or sys.stdin.buffer).read(config.sources.max_packet_bytes + 1)
        try:
            yield decode_wire(data, "stdin", 0, make_schema_library(config))
        except AlertError as error:
            yield error
    if paths:
        yield from iter_inputs(paths, not_avro=not_avro)


def convert_inputs(config: configuration.Config, inputs: Iterable[str], output_dir: Path, quiet: bool = False,
                   stdin=None) -> int:
    """Exit status: 0 all converted, 1 something rejected or nothing found, 2 the output cannot be written."""
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        print(f"vogateway convert: -o {output_dir} is a file, not a directory", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"vogateway convert: cannot make the output directory {output_dir}: {error.strerror}", file=sys.stderr)
        return 2
    convert = make_converter(config)
    stats = Stats()
    not_avro: list[Path] = []
    items = read_inputs(config, inputs, stdin, not_avro)
    with tqdm(items, unit=" alerts", disable=quiet or None, file=sys.stderr) as bar:
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
            try:
                (output_dir / file_name(event)).write_bytes(event.xml)
            except OSError as error:
                print(f"vogateway convert: cannot write into {output_dir}: {error.strerror}", file=sys.stderr)
                return 2
            stats.converted += 1
    for path in not_avro:
        print(f"left out: {path} (not an Avro container file)", file=sys.stderr)
    if not stats.converted and not stats.rejected_total:
        print(f"vogateway convert: no alerts found in {', '.join(map(str, inputs))}", file=sys.stderr)
        return 1
    left = f"; {len(not_avro)} non-Avro file{'s' if len(not_avro) != 1 else ''} left out" if not_avro else ""
    print(f"vogateway convert: {stats.summary()}{left}; wrote {output_dir}", file=sys.stderr)
    return 1 if stats.rejected_total else 0
