"""The pytest plugin for package authors (registered through the `pytest11` entry point).

Fixtures come with the database layer; until then this module only registers itself.
"""

from __future__ import annotations
