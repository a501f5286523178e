"""OpenAI's APIs: one module per endpoint, with its handler, parsing and rendering."""
