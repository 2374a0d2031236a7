"""Promotion requests, approvals, applied policies, and the gate in front of gated moves."""
