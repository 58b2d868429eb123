"""Answering spoken questions over a WebSocket: protocol, scheduler, engine, server, client."""
