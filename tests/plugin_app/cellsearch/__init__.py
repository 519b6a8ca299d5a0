"""cellsearch: federated search of one DARTS-style cell on 8x8 digits, with the fednas-privacy plugin."""
