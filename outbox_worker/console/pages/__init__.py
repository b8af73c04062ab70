"""One module per page: each turns values into Html and knows nothing of requests or SQL."""
