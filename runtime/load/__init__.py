"""The loading layer: finding package directories, importing them, the load cache, and
loading while migrating (`load_and_migrate`). Used by `migrate` as much as by the daemon.
"""
