import runtime


def test_public_names_are_exported() -> None:
    assert sorted(runtime.__all__) == sorted(
        name for name in dir(runtime) if not name.startswith("_") and name in runtime.__all__
    )
    for name in runtime.__all__:
        assert hasattr(runtime, name), name


def test_process_registry_holds_the_core_package() -> None:
    assert "@ydtb/core" in runtime.registry
    assert isinstance(runtime.registry, runtime.DatabaseRegistry)
