"""The version of comfypack (one place: pyproject.toml's version is the same, a test checks)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
