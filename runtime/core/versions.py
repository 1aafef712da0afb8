"""Package names, versions and dependency specifiers.

`packaging` does the version arithmetic (PEP 440), so `>=1.0,<2` means what pip users
expect; only the package-name part is ours, since names look like npm's `@scope/name`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

__all__ = ["Dependency", "is_valid_name", "parse_dependency", "parse_version"]

_NAME = r"(?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*"
# Matched with fullmatch: `$` also matches before a trailing newline, which let
# "@x/p\n" through as a name.
_NAME_RE = re.compile(_NAME)
_DEPENDENCY_RE = re.compile(rf"\s*(?P<name>{_NAME})\s*(?P<spec>.*?)\s*")


def is_valid_name(name: str) -> bool:
    """Tell whether `name` is a package name: `name` or `@scope/name`, lower case."""
    return bool(_NAME_RE.fullmatch(name))


def parse_version(text: str) -> Version:
    """Parse a package version such as `1.2.0`.

    Raises:
        ValueError: `text` is not a PEP 440 version.
    """
    try:
        return Version(str(text))
    except InvalidVersion:
        raise ValueError(f"version {text!r} is not valid (use a form like '1.0.0')") from None


@dataclass(frozen=True)
class Dependency:
    """A dependency on another package, with an optional version specifier."""

    name: str
    specifier: SpecifierSet

    def allows(self, version: Version) -> bool:
        """Tell whether `version` satisfies the specifier (pre-releases included)."""
        return self.specifier.contains(version, prereleases=True)

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}"


def parse_dependency(text: str) -> Dependency:
    """Parse `@ydtb/core>=1.0` or `basic` into a `Dependency`.

    Raises:
        ValueError: the name or the specifier is malformed; the message says which.
    """
    match = _DEPENDENCY_RE.fullmatch(text)
    if not match:
        raise ValueError(
            f"dependency {text!r} is not valid (use a name such as '@ydtb/core' "
            "optionally followed by a specifier such as '>=1.0')"
        )
    try:
        specifier = SpecifierSet(match["spec"])
    except InvalidSpecifier:
        raise ValueError(
            f"dependency {text!r} has an invalid version specifier {match['spec']!r} "
            "(use forms like '>=1.0', '~=1.2' or '>=1,<2')"
        ) from None
    return Dependency(match["name"], specifier)
