"""HTTP API (FastAPI): routes, schemas, lifespan and error mapping."""
