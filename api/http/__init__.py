"""HTTP: the app factory and its lifespan (`app`), one router per resource (`routes/`), the
request and response schemas, the OpenAPI document, middleware (request ids, body limits,
HEAD), the model listing served from memory (`listing`), and the shared dependencies."""
