"""Balanced-sampling manifests: which frames training may use, and how often (issue 6, in progress)."""
