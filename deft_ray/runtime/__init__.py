"""The run without Ray: the coordinator's round, round kinds, recovery policy, records, ledger and checkpoints."""
