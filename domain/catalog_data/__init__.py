"""The shipped model catalog, as data (models.toml), read with importlib.resources."""
