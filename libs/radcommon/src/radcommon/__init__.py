"""What every Telerad service shares. Thin, and changed rarely."""
