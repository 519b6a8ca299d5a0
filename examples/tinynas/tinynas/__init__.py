"""A tiny DARTS-style federated search, written as any Flower user would: no fednas code.

Its ServerApp wraps its strategy with the eavesdropper plugin in two lines
(``server_app.py``); everything else is plain Flower and PyTorch.
"""
