"""The tamper-evident audit log: tables, the hash chain, the writer and queries."""
