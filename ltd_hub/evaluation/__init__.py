"""Scoring a base model or an adapter on eval sets, with bootstrap intervals; metric scripts in ``metrics/``."""
