"""Flower ClientApp and client-side mods."""
