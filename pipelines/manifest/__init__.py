"""Balanced-sampling manifests: which frames training may use, and how often (docs/manifests.md)."""
