"""The ``comfypack`` command line. Exit codes: 0 ok, 1 runtime failure, 2 usage / bad input.

The CLI stage is the top of the pipeline: each command parses its flags and hands the work to a
stage below it (workflow, comfyui, lock, pack, serve, ship). One module per command or group:

- ``_group``: the ``comfypack`` click group (-v / --version, logging) and ``main``
- ``_common``: consoles, error rendering and exit codes, the shared ``--comfyui`` options
- ``_workflows``: a WORKFLOW argument in either format, or a ``.cpack.zip`` (inspect / run / serve)
- ``_locking``: the lock settings and report shared by lock and pack
- ``_bento``: the Bento flags and build shared by build / containerize / deploy
- ``version``, ``comfyui``, ``nodes``, ``inspect``, ``run``, ``serve``, ``lock``, ``pack``,
  ``unpack``, ``client``, ``build``, ``containerize``, ``deploy``: the commands

Importing this package registers every command on the group.
"""

from __future__ import annotations

from . import (  # noqa: F401  (each registers its command on the group)
    build,
    client,
    comfyui,
    containerize,
    deploy,
    inspect,
    lock,
    nodes,
    pack,
    run,
    serve,
    unpack,
    version,
)
from ._group import cli, main

__all__ = ["main", "cli"]
