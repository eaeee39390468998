"""The BentoML service (``sidecar.serving.service:Sidecar``); imported only when serving."""
