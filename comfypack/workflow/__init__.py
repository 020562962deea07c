"""comfypack.workflow.interface."""
