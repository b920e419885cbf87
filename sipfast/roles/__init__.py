"""Roles: the policies of DESIGN.md §1 (proxy; later lb and gateway)."""
