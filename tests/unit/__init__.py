"""Unit tests: fast, no real ComfyUI, no network beyond 127.0.0.1 servers started in-process.

A package (this ``__init__``) so that test modules named like those in ``tests/integration``
and ``tests/e2e`` (``test_client.py`` …) do not clash when the whole suite is collected.
"""
