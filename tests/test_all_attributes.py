"""Every module's `__all__` lists exactly its public names, and they exist."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import runtime

SKIP = {"runtime.__main__", "runtime.dev.__main__"}  # they run on import


def modules() -> list[str]:
    names = [runtime.__name__]
    for info in pkgutil.walk_packages(runtime.__path__, "runtime."):
        if info.name not in SKIP:
            names.append(info.name)
    return sorted(names)


def defined_here(module: ModuleType) -> set[str]:
    return {name for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module.__name__}


@pytest.mark.parametrize("name", modules())
def test_all_names_exist_and_cover_the_public_definitions(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        assert not defined_here(module), f"{name} defines public names but has no __all__"
        return
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    assert [n for n in exported if not hasattr(module, n)] == []
    assert sorted(defined_here(module) - set(exported)) == []
