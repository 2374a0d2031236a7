"""Delivering governance events: the envelope, the sinks and the dispatcher.

Events are written to ``governance_outbox`` by the audit writer, in the transaction of
their change (:mod:`mlflow_governance.audit.outbox`). This package reads them back and
delivers them, at least once and in order per model, to the sinks the policy's
``notifications:`` configure.
"""
