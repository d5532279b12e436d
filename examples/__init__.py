"""Runnable example sweeps for mabeam (see each folder's README)."""
