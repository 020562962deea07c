"""Somebody else's BentoML service (not comfypack's) sharing the host — and the default
``$BENTOML_HOME`` — with comfypack services in ``test_host.py``."""

import bentoml


@bentoml.service(name="someone-else")
class Other:
    @bentoml.task
    def echo(self, text: str) -> str:
        return text
