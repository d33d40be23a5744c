"""Learned reward models (discriminators) for recgym environments. Filled in by the rewards issue."""
