"""Changelog-backed state: the session, task and step values and the Faust tables that hold them."""
