"""Optional bridges to third-party frameworks, each imported only when asked for."""
