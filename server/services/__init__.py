"""Plain service functions; those that touch the database take the session as a keyword-only argument."""
