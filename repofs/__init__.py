"""repofs: a deduplicating, encrypted, append-only backup repository.

The library has no click, no printing and no exit codes: see ``repofs_cli``.
"""

__version__ = "0.1.0"
