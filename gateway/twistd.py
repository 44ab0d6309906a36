"""Options and service factory for ``twistd vogateway`` (the plugin lives in twisted/plugins/)."""

import argparse

from twisted.python import usage

from gateway.commands.options import load_config
from gateway.commands.serve import add_serve_arguments
from gateway.config import ConfigError
from gateway.service import Gateway, tune_gc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twistd vogateway", description="Run the gateway under twistd.")
    add_serve_arguments(parser)
    return parser


class Options(usage.Options):
    """Takes exactly the flags of ``vogateway serve``."""

    def parseOptions(self, options=None):
        try:
            self.serve_args = _parser().parse_args(options or [])
        except SystemExit as exit:
            raise usage.UsageError("bad arguments (see above)") from exit

    def __str__(self):
        return _parser().format_help()


def makeService(options: Options):
    try:
        gateway = Gateway(load_config(options.serve_args))
        tune_gc()
        return gateway
    except ConfigError as error:
        raise usage.UsageError(str(error)) from None
