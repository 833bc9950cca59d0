"""The platform's HTTP face: FastAPI routers per area and the visual builder at /."""
