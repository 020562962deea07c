"""``python -m comfypack.cli``: the same CLI as the ``comfypack`` command."""

from . import main

__all__ = []

main()
