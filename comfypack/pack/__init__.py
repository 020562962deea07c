"""comfypack.pack.archive."""
