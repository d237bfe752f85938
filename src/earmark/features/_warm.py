"""Imported by the extraction workers' fork server: loads the compiled kernels once, so that every
worker forked from it starts with them (numba otherwise loads its cache in each process)."""

from earmark.features._kernels import warm

warm()
