"""Checksums and fingerprints must not depend on the process: a second `migrate` once
saw the core migration as edited because constraint order followed string-hash
randomisation, and the daemon takes a new fingerprint for a schema edit."""

import functools
import subprocess
import sys

import pytest

SCRIPT = """
import runtime
from sqlalchemy import CheckConstraint, Column, ForeignKey, Integer, MetaData, String, Table
from sqlalchemy import Index, UniqueConstraint, text
md = MetaData()
Table("ydtb_things", md,
      Column("id", Integer, primary_key=True),
      Column("workspace_id", String(20), ForeignKey("ydtb_workspaces.id", ondelete="CASCADE"),
          nullable=False),
      Column("a", Integer, ForeignKey("ydtb_tools.id")), Column("b", Integer, unique=True),
      Column("c", String(9), index=True), Index("ix_things_ab", "a", "b"),
      Index("ix_things_lower_c", text("lower(c)"), postgresql_where=text("a > 0")),
      UniqueConstraint("a", "b"), CheckConstraint("a > 0"), CheckConstraint("b > 0"))
r = runtime.DatabaseRegistry()
p = r.register_database(package_name="things", schema=md, version="1")
q = runtime.DatabaseRegistry().register_database(
    package_name="things", schema=md, version="1",
    migrations=[runtime.Migration("0001_things", up="SELECT 1")])
print(runtime.registry.get("@ydtb/core").migrations[0].checksum, p.migrations[0].checksum,
      p.fingerprint, q.fingerprint)
"""


@functools.cache
def _checksums(seed: str) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT], env={"PYTHONHASHSEED": seed},
                          capture_output=True, text=True, check=True)
    return done.stdout


@pytest.mark.parametrize("seed", ["1", "2", "3"])
def test_checksums_are_the_same_in_every_process(seed: str) -> None:
    assert _checksums(seed) == _checksums("0")
