"""postback plugin: Ton AI conversion reporting (work in progress)."""
