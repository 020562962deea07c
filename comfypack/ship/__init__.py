"""comfypack.ship."""
