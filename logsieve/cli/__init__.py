"""The ``logsieve`` command line: a thin layer above every package (nothing imports it).

:mod:`logsieve.cli.main` holds the click group and adds the commands of
:mod:`~logsieve.cli.logs`, :mod:`~logsieve.cli.model`, :mod:`~logsieve.cli.engine` and
:mod:`~logsieve.cli.serve`. Each command parses its options, builds the frozen configs
once, calls one library function of the package that owns the work (imported lazily
inside the command, so ``logsieve --help`` stays fast) and prints. Domain errors
(:class:`~logsieve.errors.LogsieveError`) become a one-line ``Error: ...`` and exit
status 1, in one place (:class:`~logsieve.cli.main.Group`).
"""
