"""ModelYard traffic."""
