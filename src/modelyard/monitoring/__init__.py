"""ModelYard monitoring."""
