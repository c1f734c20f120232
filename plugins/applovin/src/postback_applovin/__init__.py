"""postback plugin: AppLovin Axon Conversion API (work in progress)."""
