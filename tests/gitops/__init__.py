"""Tests of ``gitops render``: the pure manifests, the service action and the command."""
