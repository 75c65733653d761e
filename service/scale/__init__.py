"""Ray Serve: the renderer deployment, cache-affine routing and the application builder.

Only ``lipsync serve --ray`` and the Ray ingress import this package: the embedded default
never imports ray.
"""
