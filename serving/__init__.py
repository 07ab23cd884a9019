"""Ray Serve inference: the FraudScorer and Recommender deployments and the HTTP ingress.

The handle API is ``serving.protocol`` (importable without Serve); the app is built by
``serving.app:build_app`` from ``serve_config.yaml``; ``rtml serve`` runs it. See
docs/serving.md.
"""
