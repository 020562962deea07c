"""Nodes used only by comfypack's tests and benchmarks (loaded via COMFYPACK_EXTRA_NODES_DIRS).

``ComfyPackTestSleep`` waits ``seconds`` and passes ``value`` on: a workflow whose time is
dominated by waiting, for crash, cancel, queue and worker-scaling tests.
"""

import time

from comfy_api.latest import io


class Sleep(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ComfyPackTestSleep",
            display_name="ComfyPack Test Sleep",
            category="comfypack/testing",
            inputs=[
                io.AnyType.Input("value"),
                io.Float.Input("seconds", default=1.0, min=0.0, max=600.0, step=0.01),
            ],
            outputs=[io.AnyType.Output()],
        )

    @classmethod
    def fingerprint_inputs(cls, value, seconds):  # never cached: every run really waits
        return float("nan")

    @classmethod
    def execute(cls, value, seconds) -> io.NodeOutput:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # short slices so ComfyUI's interrupt can land
            import comfy.model_management

            comfy.model_management.throw_exception_if_processing_interrupted()
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return io.NodeOutput(value)


NODE_CLASS_MAPPINGS = {"ComfyPackTestSleep": Sleep}
NODE_DISPLAY_NAME_MAPPINGS = {"ComfyPackTestSleep": "ComfyPack Test Sleep"}
