"""Telerad: the command that runs the platform, embedded or one service at a time."""
