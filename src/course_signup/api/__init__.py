"""The HTTP layer: schemas, dependencies, the error mapper, middleware and thin routes."""
