"""The pure core: everything that can be decided without a database or the filesystem."""
