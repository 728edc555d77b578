"""HTTP and websocket routes: thin, each parses, calls one service, returns a schema."""
