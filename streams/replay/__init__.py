"""Replaying recorded topics against a candidate config (shadow runs) and reporting the diff."""
