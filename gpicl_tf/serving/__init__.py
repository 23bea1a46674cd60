"""Serving: TF Serving clients (REST, gRPC) and a local REST server."""
