"""postback plugin: Mobana conversion tracking (work in progress)."""
