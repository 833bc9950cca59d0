"""Serverless functions: packages stored content-addressed, versions, a warm pool of sandboxed interpreters,
invocations run locally or on providers, each recorded with its logs and metrics."""
