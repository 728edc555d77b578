"""The dashboard web server: FastAPI app, database, websockets, launcher. Never imports torch or the trainer."""
