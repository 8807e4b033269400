"""The package version, in a leaf of its own so that any module may read it without importing
the package's public API (and so without an upward import)."""

__version__ = "0.1.0"
