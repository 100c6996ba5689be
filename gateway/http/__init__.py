"""The HTTP surface: one router per surface, the shared dependencies, one error handler."""
