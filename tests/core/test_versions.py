from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from runtime.core.versions import Dependency, is_valid_name, parse_dependency, parse_version


@pytest.mark.parametrize(
    "name",
    ["basic", "notes", "@ydtb/core", "@acme/notes-pro", "a", "0x", "my_pkg.v2", "@a1/b.c_d-e"],
)
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("Notes", id="upper-case"),
        pytest.param("@YDTB/core", id="upper-case-scope"),
        pytest.param("@ydtb/", id="scope-without-name"),
        pytest.param("@/core", id="empty-scope"),
        pytest.param("ydtb/core", id="scope-without-at"),
        pytest.param("@ydtb/core/extra", id="two-slashes"),
        pytest.param("-notes", id="leading-dash"),
        pytest.param(".notes", id="leading-dot"),
        pytest.param("my notes", id="space"),
        pytest.param("notes>=1", id="specifier"),
        pytest.param(" notes", id="leading-space"),
        pytest.param("notes\n", id="trailing-newline"),
        pytest.param("@x/p\n", id="scoped-trailing-newline"),
    ],
)
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)


@pytest.mark.parametrize(
    ("text", "name", "specifier"),
    [
        pytest.param("@ydtb/core>=1.0", "@ydtb/core", ">=1.0", id="scoped"),
        pytest.param("basic", "basic", "", id="bare"),
        pytest.param("a ~=1.2", "a", "~=1.2", id="space-compatible"),
        pytest.param("x>=1,<2", "x", ">=1,<2", id="range"),
        pytest.param("  @ydtb/core >= 1.0  ", "@ydtb/core", ">=1.0", id="padded"),
        pytest.param("notes==2.*", "notes", "==2.*", id="wildcard"),
    ],
)
def test_parse_dependency(text: str, name: str, specifier: str) -> None:
    dependency = parse_dependency(text)

    assert dependency == Dependency(name, SpecifierSet(specifier))
    assert str(dependency) == f"{name}{SpecifierSet(specifier)}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "Basic>=1",
            "dependency 'Basic>=1' is not valid (use a name such as '@ydtb/core' optionally "
            "followed by a specifier such as '>=1.0')",
            id="bad-name",
        ),
        pytest.param(
            "",
            "dependency '' is not valid (use a name such as '@ydtb/core' optionally "
            "followed by a specifier such as '>=1.0')",
            id="empty",
        ),
        pytest.param(
            "basic 1.0",
            "dependency 'basic 1.0' has an invalid version specifier '1.0' "
            "(use forms like '>=1.0', '~=1.2' or '>=1,<2')",
            id="no-operator",
        ),
        pytest.param(
            "@ydtb/core=>1.0",
            "dependency '@ydtb/core=>1.0' has an invalid version specifier '=>1.0' "
            "(use forms like '>=1.0', '~=1.2' or '>=1,<2')",
            id="swapped-operator",
        ),
        pytest.param(
            "x>=1\nfoo",
            "dependency 'x>=1\\nfoo' is not valid (use a name such as '@ydtb/core' optionally "
            "followed by a specifier such as '>=1.0')",
            id="second-line",
        ),
        pytest.param(
            "x>=1;<2",
            "dependency 'x>=1;<2' has an invalid version specifier '>=1;<2' "
            "(use forms like '>=1.0', '~=1.2' or '>=1,<2')",
            id="semicolon",
        ),
    ],
)
def test_parse_dependency_rejects_malformed_text(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_dependency(text)

    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "version", "allowed"),
    [
        pytest.param("basic", "0.0.1", True, id="any"),
        pytest.param("x>=1.0", "1.0", True, id="lower-bound"),
        pytest.param("x>=1.0", "0.9.9", False, id="below"),
        pytest.param("x>=1,<2", "1.9.9", True, id="in-range"),
        pytest.param("x>=1,<2", "2.0.0", False, id="upper-bound"),
        pytest.param("x~=1.2", "1.9", True, id="compatible"),
        pytest.param("x~=1.2", "2.0", False, id="not-compatible"),
        pytest.param("x>=1.0", "2.0.0a1", True, id="pre-release-allowed"),
        pytest.param("x>=1.0", "1.1.0rc1", True, id="release-candidate-allowed"),
        pytest.param("x>=1.0", "1.0.0b1", False, id="pre-release-below"),
        pytest.param("x>=1,<2", "2.0.0a1", False, id="pre-release-of-excluded-upper"),
    ],
)
def test_allows(text: str, version: str, allowed: bool) -> None:
    assert parse_dependency(text).allows(Version(version)) is allowed


@pytest.mark.parametrize("text", ["1.0.0", "1", "2.0.0rc1", "0.1.dev3"])
def test_parse_version(text: str) -> None:
    assert parse_version(text) == Version(text)


def test_parse_version_rejects_malformed_text() -> None:
    with pytest.raises(ValueError) as info:
        parse_version("one")

    assert str(info.value) == "version 'one' is not valid (use a form like '1.0.0')"
