"""The database layer: the embedded server, engines, the ledger and the run that writes it,
the migrator and its feeder while packages load, checks, dev sync and NOTIFY."""
