"""a1pipe data pipelines: the unified episode store, conversion, curation and the CLI."""

__version__ = "0.1.0"
