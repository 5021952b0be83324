"""ModelYard control."""
