"""comfypack.serve."""
