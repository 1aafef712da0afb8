"""The database layer: the embedded server, engines, the ledger and the migrator."""
