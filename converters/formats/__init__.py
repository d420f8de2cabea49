"""Readers for dataset formats shared by several sources (libraries, not registered sources)."""
