"""comfypack.lock.create."""
