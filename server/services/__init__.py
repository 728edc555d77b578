"""Plain data-access functions; each takes the session as a keyword-only argument."""
