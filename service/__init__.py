"""Orchestration: settings, weights, model bundle, media, engines, pipelines and the CLI."""
