"""comfypack.files."""
