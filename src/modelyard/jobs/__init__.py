"""ModelYard jobs: the same models offline (batch, stream, materialised predictions)."""
