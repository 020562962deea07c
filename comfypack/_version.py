"""The version of comfypack (one place)."""

__version__ = "0.1.0"
