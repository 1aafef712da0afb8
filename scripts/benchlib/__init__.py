"""The benchmark of `./scripts/bench`: the pipeline and the reload loop against their floors.

Modules, each one noun:

- `workload`: seeded synthetic packages written in the `packages_dev/` layout;
- `floor`: what the same work costs done by hand with asyncpg (also a script, so a
  floor can run as its own process);
- `database`: the PostgreSQL server and a fresh database per measurement;
- `results`: samples, targets, verdicts and the printed table;
- `pipeline`: cold, no-op and incremental runs, in process and as processes;
- `fleet`: `migrate --fleet` on 20 fresh databases, 4 at once, as a process;
- `reload`: the dev daemon's save -> applied -> signalled loop, and its memory;
- `verify`: the generated `schema.py` files declare what their migrations build;
- `profiles`: `--profile DIR`, where the time and the memory go (pyinstrument).
"""
