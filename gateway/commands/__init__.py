"""The ``vogateway`` subcommands, one module each: ``register(commands)`` adds its subparser, and ``gateway/cli.py``
lists the modules and builds the parser from them. :mod:`gateway.commands.options` holds the flags and the config
loading they share.

A command module is cheap to import: its handler imports the code that does the work when the command runs, so
that ``vogateway --help`` or ``vogateway config`` does not load every command's stack (the parser alone imports
in ~0.05 s; with every engine, ~1 s). The engines themselves import at their tops.
"""
